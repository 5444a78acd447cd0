"""`python -m mrinet.train`: the command lives in mrinet.cli.train; kept under this name for
scripts and notebooks written against it, and for Lightning's DDP launcher, which starts
ranks > 0 as `python -m <the module the user ran>`."""

from mrinet.cli.train import (
    DDP_ENV,
    main,
    one_run_dir_for_all_ranks,
    resolve_ckpt_path,
    run_info,
    train,
    train_for_sweep,
)

__all__ = [
    "DDP_ENV",
    "main",
    "one_run_dir_for_all_ranks",
    "resolve_ckpt_path",
    "run_info",
    "train",
    "train_for_sweep",
]

if __name__ == "__main__":
    main()
