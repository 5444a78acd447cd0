"""Train a model: python -m mrinet.train experiment=dti_mlp [overrides...]

Reads top to bottom like a recipe: seed, data, model, callbacks, loggers, trainer, fit, test,
metrics. Torch and Lightning are imported inside `train` so `--help`/`--cfg` stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mrinet import __version__
from mrinet.errors import CheckpointError, ConfigError, MrinetError
from mrinet.run.entry import (
    announce,
    apply_extras,
    check_accelerator,
    flat_hparams,
    hydra_command,
    instantiate_list,
    register_resolvers,
    scalar_metrics,
    write_json,
)
from mrinet.run.net_record import record_built_net
from mrinet.run.run_dirs import find_last_checkpoint
from mrinet.run.trial_report import sweep_trial_callbacks
from mrinet.slurm import signals

log = logging.getLogger("mrinet.train")
register_resolvers()


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` -> newest last.ckpt of this task; a path is checked to exist."""
    if not cfg.get("ckpt_path"):
        return None
    if str(cfg.ckpt_path) == "last":
        return str(find_last_checkpoint(cfg.paths.log_dir, cfg.task_name))
    path = Path(cfg.ckpt_path)
    if not path.is_file():
        raise CheckpointError(
            "checkpoint to resume from not found", path, "give an existing .ckpt or ckpt_path=last"
        )
    return str(path)


def run_info(cfg: DictConfig, datamodule=None) -> dict:
    """What a checkpoint must carry to be evaluated or used for prediction on its own (an
    auto-context stage: also its first stage's weights and settings)."""
    info = {
        "version": __version__,
        "task_name": str(cfg.task_name),
        "seed": int(cfg.seed),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "optimized_metric": str(cfg.get("optimized_metric")),
    }
    first_stage = getattr(getattr(datamodule, "context", None), "model", None)
    if first_stage is not None:
        info["context_model"] = first_stage.checkpoint
    return info


DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def one_run_dir_for_all_ranks(trainer, output_dir: Path, ckpt_path: str | None) -> Iterator[None]:
    """Rank 0 alone decides the run dir when Lightning re-runs this script for ranks > 0.

    Lightning's subprocess launcher (strategy=ddp, no SLURM/torchrun) starts ranks > 0 as
    `python -m mrinet.train <sys.argv[1:]> hydra.run.dir=<HydraConfig run.dir>`. That breaks in
    a multirun (argv holds `-m` and the sweep lists, run.dir is not the job's dir) and can pick a
    new timestamp. So for the launch, argv becomes this job's own overrides (with the resolved
    checkpoint) and run.dir this run's output dir; afterwards the DDP environment is cleared so
    the next job of a sweep launches its own ranks again.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    # lazy: Lightning; keeps `mrinet-train --help` start-up fast (called once a run has started)
    from mrinet.compat.lightning import spawns_script_copies

    spawns_scripts = spawns_script_copies(trainer.strategy) and HydraConfig.initialized()
    if not spawns_scripts:
        yield
        return
    hydra_cfg = HydraConfig.get()
    # the job's overrides minus what would make a rank start a sweep or pick another checkpoint
    drop = ("ckpt_path", "hparams_search")
    keep = [o for o in hydra_cfg.overrides.task if o.split("=")[0].lstrip("+~") not in drop]
    argv, run_dir = sys.argv, hydra_cfg.run.dir
    sys.argv = [
        argv[0],
        *keep,
        *([f"ckpt_path={ckpt_path}"] if ckpt_path else []),
        "hydra.mode=RUN",
    ]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = run_dir
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key in DDP_ENV:
            os.environ.pop(key, None)


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Fit and test as configured; returns (metrics, objects) and writes metrics.json."""
    apply_extras(cfg)
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    # lazy: these import torch and Lightning; keeps `mrinet-train --help` and `--cfg` start-up fast
    from mrinet.callbacks import RequeueAtSafePoint, RevalidateAfterRestart, RunInfoInCheckpoint
    from mrinet.run.checkpoint_io import use_atomic_checkpoints
    from mrinet.run.checkpoints import check_fits_model, load_checkpoint

    signals.install_if_slurm()  # a requeue signal during data simulation is kept for later

    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    log.info("data: %s", cfg.data._target_)
    datamodule = instantiate(cfg.data, _convert_="all")
    log.info("model: %s", cfg.model._target_)
    model = instantiate(cfg.model, _convert_="all")
    # the model/data contract: what the model needs from the data, once the splits are known
    datamodule.prepare_data()
    datamodule.setup("fit")
    model.set_data_spec(datamodule.data_spec())  # builds the net, sized by the data
    record_built_net(cfg, model)
    callbacks = [
        *instantiate_list(cfg.get("callbacks")),
        RunInfoInCheckpoint(run_info(cfg, datamodule)),
        # resume safe at any instant: checkpoints only between steps, revalidate if needed
        RequeueAtSafePoint(),
        RevalidateAfterRestart(),
        *sweep_trial_callbacks(cfg),  # a trial of mrinet's Optuna sweeper: report, prune
    ]
    loggers = instantiate_list(cfg.get("logger"))
    check_accelerator(cfg.trainer)
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all"
    )

    use_atomic_checkpoints(trainer)  # a full disk never truncates the previous checkpoint

    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path:
        # refuse another model's/experiment's checkpoint with a message, not a load traceback
        check_fits_model(load_checkpoint(ckpt_path), model, ckpt_path)
    if ckpt_path and cfg.get("train", True):
        log.info("resuming from %s in %s", ckpt_path, output_dir)
    best = None
    with one_run_dir_for_all_ranks(trainer, output_dir, ckpt_path):
        if cfg.get("train", True):
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = scalar_metrics(trainer.callback_metrics, "")

        if cfg.get("test", True):
            checkpoint_cb = trainer.checkpoint_callback
            best = checkpoint_cb.best_model_path if checkpoint_cb is not None else ""
            if not best:
                log.warning("no best checkpoint: testing the current weights")
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
            metrics.update(scalar_metrics(trainer.callback_metrics, "test/"))

    if trainer.is_global_zero:
        test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}
        from pytorch_lightning.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):  # its hparams view shows the final metrics
                logger.log_hyperparams(flat_hparams(cfg), metrics=test_metrics or None)
            else:
                logger.log_hyperparams(flat_hparams(cfg))
            logger.save()
        write_json(
            output_dir / "metrics.json",
            {
                "task_name": cfg.task_name,
                "seed": int(cfg.seed),
                "ckpt_path": best or None,
                "optimized_metric": cfg.get("optimized_metric"),
                "optimized_value": metrics.get(cfg.get("optimized_metric")),
                "test": test_metrics,
                "epochs": int(trainer.current_epoch),
                "final": {k: v for k, v in metrics.items() if not k.startswith("test/")},
            },
        )
        announce(output_dir)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def train_for_sweep(cfg: DictConfig) -> float | None:
    """Train, and return `optimized_metric` for sweepers (a NaN fails the trial, not the study)."""
    metrics, _ = train(cfg)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric {name!r} was not logged (logged: {sorted(metrics)[:20]})",
            "optimized_metric",
            "set optimized_metric to one of the logged metrics, e.g. val/bal_acc",
        )
    value = metrics[name]
    if not math.isfinite(value):
        # Optuna aborts the whole study on a NaN objective; a raised error fails this trial only
        raise MrinetError(
            f"optimized_metric {name} is {value} (the training diverged)",
            "optimized_metric",
            "lower model.optimizer.lr or check the data for NaN/inf",
        )
    return value


main = hydra_command("train", train_for_sweep)

if __name__ == "__main__":
    main()
