"""What every entry point (train, eval, predict) shares: resolvers, errors, extras, outputs."""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mrinet.errors import ConfigError, MrinetError, disk_full_error, is_disk_full
from mrinet.io.atomic import atomic_file
from mrinet.run import trust
from mrinet.run.config_dir import config_dir
from mrinet.run.run_dirs import hydra_subdir_for, newest_best_checkpoint, rank_suffix, run_dir_for
from mrinet.run.sweep import optuna_direction
from mrinet.slurm.partition import gpus_for

log = logging.getLogger("mrinet")


def register_resolvers() -> None:
    """OmegaConf resolvers used by the configs (must exist before Hydra composes)."""
    if not OmegaConf.has_resolver("len"):
        OmegaConf.register_new_resolver("len", lambda x: len(x))
    if not OmegaConf.has_resolver("mrinet_cwd"):  # configs/paths/default.yaml: root_dir
        OmegaConf.register_new_resolver("mrinet_cwd", launch_cwd)
    if not OmegaConf.has_resolver("mrinet_run_dir"):  # configs/hydra/default.yaml: run.dir
        OmegaConf.register_new_resolver("mrinet_run_dir", run_dir_for)
    if not OmegaConf.has_resolver("mrinet_best_ckpt"):  # configs/experiment/dti_mlp_autocontext
        OmegaConf.register_new_resolver("mrinet_best_ckpt", newest_best_checkpoint)
    if not OmegaConf.has_resolver("mrinet_hydra_subdir"):  # configs/hydra/default.yaml
        OmegaConf.register_new_resolver("mrinet_hydra_subdir", hydra_subdir_for)
    if not OmegaConf.has_resolver("mrinet_rank_suffix"):  # configs/hydra/default.yaml
        OmegaConf.register_new_resolver("mrinet_rank_suffix", rank_suffix)
    if not OmegaConf.has_resolver("mrinet_slurm_gpus"):  # configs/hydra/launcher/slurm.yaml
        OmegaConf.register_new_resolver("mrinet_slurm_gpus", gpus_for)
    if not OmegaConf.has_resolver("optuna_direction"):  # configs/hparams_search/*
        OmegaConf.register_new_resolver("optuna_direction", optuna_direction)


def launch_cwd(*, _root_: DictConfig) -> str:
    """Where mrinet was started: Hydra's runtime.cwd, also before a sweep sets HydraConfig.

    `${hydra:runtime.cwd}` fails while Hydra's sweepers resolve hydra.sweep.dir (HydraConfig
    is not set yet); the composed config holds the same value under hydra.runtime.cwd.
    """
    import os

    cwd = OmegaConf.select(_root_, "hydra.runtime.cwd", default=None)
    if cwd:
        return str(cwd)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


def mrinet_cause(err: BaseException) -> MrinetError | None:
    """The MrinetError behind `err`, also when Hydra's instantiate or Lightning wrapped it
    (a full disk behind it: a DiskFullError)."""
    seen, first = set(), err
    while err is not None and id(err) not in seen:
        if isinstance(err, MrinetError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return disk_full_cause(first)


def disk_full_cause(err: BaseException | None) -> MrinetError | None:
    """A full device or quota (ENOSPC, EDQUOT, EFBIG) anywhere behind `err` (a library's
    write: TensorBoard, Lightning's checkpoint) as one DiskFullError naming the file."""
    seen = set()
    while err is not None and id(err) not in seen:
        if is_disk_full(err):
            return disk_full_error(err, err.filename or _written_file(err))
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _written_file(err: BaseException) -> str | None:
    """The file a library was writing when `err` was raised (innermost frame's local)."""
    import os

    tb, found = err.__traceback__, None
    while tb is not None:
        local = tb.tb_frame.f_locals
        for name in ("filename", "path", "filepath", "file", "fname", "name"):
            value = local.get(name)
            if isinstance(value, bytes):
                value = os.fsdecode(value)
            if isinstance(value, (str, os.PathLike)) and os.sep in os.fspath(value):
                found = os.fspath(value)
                break
        tb = tb.tb_next
    return found


def guarded(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Turn a MrinetError into one clear message and exit 1 (a sweep job fails instead)."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig):
        quiet_about_full_disks()
        try:
            return task(cfg)
        except Exception as raised:
            err = mrinet_cause(raised)
            if err is None:
                raise
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error("%s: %s", type(err).__name__, err)
                raise err from None  # let the sweeper record this job as failed and go on
            print(f"\nmrinet: {type(err).__name__}: {err}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper


def hydra_command(config_name: str, task: Callable[[DictConfig], object]) -> Callable:
    """A Hydra command's `main` (train, eval, predict, export): configs/<config_name>.yaml found
    through `config_dir()` from any folder (the checkout's or the wheel's), `task` guarded."""
    entry = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    return entry(guarded(task))


def quiet_about_full_disks() -> None:
    """A full disk is reported once, as a DiskFullError: a writer thread that dies of it
    (TensorBoard's; the main thread re-raises its error) and a log file that can no longer be
    written print no traceback of their own."""
    import logging as logging_module
    import threading

    handle_error = logging_module.Handler.handleError
    if not getattr(handle_error, "mrinet", False):

        def quiet_handle_error(self, record) -> None:
            if is_disk_full(sys.exc_info()[1]):  # a log file on the full disk: stderr goes on
                return
            handle_error(self, record)

        quiet_handle_error.mrinet = True
        logging_module.Handler.handleError = quiet_handle_error
    default = threading.excepthook
    if getattr(default, "mrinet", False):
        return

    def hook(args) -> None:
        if is_disk_full(args.exc_value):
            log.debug("writer thread %s: %s", getattr(args.thread, "name", "?"), args.exc_value)
            return
        default(args)

    hook.mrinet = True
    threading.excepthook = hook


def apply_extras(cfg: DictConfig) -> None:
    """Thread count, warning filters and the config printout, before anything heavy runs
    (and which modules a checkpoint's config may name: mrinet.run.trust)."""
    trust.configure_from(cfg)
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        for pattern in (
            ".*does not have many workers.*",
            ".*The number of training batches.*",
            ".*LeafSpec.*",
            ".*is an invalid version and will not be supported.*",
            ".*Checkpoint directory .* exists and is not empty.*",
            ".*treespec.*",
            # the Classifier logs metrics already summed over ranks (confusion matrices)
            ".*when logging on epoch level in distributed setting.*",
            # the Classifier moves its groups of batches itself; mrinet's DataModules do not
            ".*overridden `transfer_batch_to_device` in `LightningModule` but have passed.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
    if extras.get("num_threads"):
        import torch

        torch.set_num_threads(int(extras.num_threads))
    if extras.get("print_config"):
        print_config(cfg)


def print_config(cfg: DictConfig) -> None:
    """The composed config as a tree (rich), the groups first."""
    from rich import print as rprint
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key in cfg:
        branch = tree.add(str(key))
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(Syntax(text, "yaml"))
    rprint(tree)


def instantiate_list(node: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a callbacks/logger group (null entries skipped)."""
    from hydra.utils import instantiate

    objects = []
    for _, conf in (node or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            obj = instantiate(conf)
            if obj is not None:
                objects.append(obj)
    return objects


def flat_hparams(cfg: DictConfig) -> dict:
    """Resolved config flattened to `a/b/c: scalar` for TensorBoard's hparams view."""
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), sub)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[prefix] = "null" if value is None else value
        else:
            flat[prefix] = json.dumps(value)

    for key in ("data", "model", "trainer", "seed", "task_name", "tags", "optimized_metric"):
        if key in container:
            walk(key, container[key])
    return flat


def write_json(path: str | Path, payload: dict) -> Path:
    """Write JSON atomically (never a half-written metrics file)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain))
    return Path(path)


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def scalar_metrics(metrics: dict, prefix: str) -> dict[str, float]:
    """`prefix*` entries of Lightning's callback_metrics as plain floats."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def announce(output_dir: str | Path) -> None:
    """Tell the user where the run went and how to look at it."""
    output_dir = Path(output_dir)
    msg = (
        f"\nrun directory: {output_dir}\n"
        f"tensorboard logs: {output_dir / 'tensorboard'}\n"
        f"view them with:  tensorboard --logdir {output_dir.parent}\n"
    )
    log.info(msg.rstrip())


def check_accelerator(trainer_cfg) -> None:
    """`trainer=gpu`/`ddp` on a machine without a usable GPU: say so in one line, with the fix."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu"))
    if accelerator not in ("gpu", "cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch ({torch.__version__}, {build}) sees no GPU",
            "trainer.accelerator",
            "use trainer=cpu (or trainer=ddp_cpu), or run on a GPU node with a CUDA build of torch",
        )
