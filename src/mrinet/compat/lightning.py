"""Every private Lightning API mrinet relies on, in one place, each behind a named function.

Lightning gives no public way to do these; each is checked against the installed Lightning by
tests/compat/test_lightning.py, one test per function, so a Lightning release that renames or
changes one fails there, by name, instead of inside a training run. pyproject caps
pytorch-lightning below the next untested minor; when raising the cap, run those tests first.
Tested with pytorch-lightning 2.6.6.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import ClusterEnvironment
from lightning_fabric.utilities.types import _Stateful
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def cluster_environment(trainer: pl.Trainer) -> ClusterEnvironment:
    """The cluster environment the trainer chose (SLURM, torchrun, local...), whatever the
    strategy (a single-device strategy has none of its own)."""
    return trainer._accelerator_connector.cluster_environment


def train_loaders(trainer: pl.Trainer) -> list[Any] | None:
    """The training DataLoaders of the running fit (None before the fit loop set them up)."""
    combined = trainer.fit_loop._combined_loader
    return None if combined is None else list(combined.flattened)


def is_stateful(obj: object) -> bool:
    """Does `obj` follow Lightning's state_dict/load_state_dict protocol (a loader Lightning
    restores mid-epoch)?"""
    return isinstance(obj, _Stateful)


def next_hpc_checkpoint_path(trainer: pl.Trainer) -> str:
    """`<default_root_dir>/hpc_ckpt_<n+1>.ckpt`: the name Lightning's SLURM requeue gives a
    checkpoint, and the newest of which it resumes from."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


def validates_this_epoch(trainer: pl.Trainer) -> bool:
    """Does the current training epoch run a validation with batches (validation enabled,
    check_val_every_n_epoch, limit_val_batches)?"""
    epoch_loop = trainer.fit_loop.epoch_loop
    return epoch_loop._should_check_val_epoch() and not epoch_loop.val_loop.skip


def rerun_validation(trainer: pl.Trainer) -> None:
    """Run the current epoch's validation loop again from its start (after a resume that landed
    past it)."""
    val_loop = trainer.fit_loop.epoch_loop.val_loop
    val_loop.restarting = False
    val_loop.reset_restart_stage()
    trainer.validating = True
    val_loop.run()
    trainer.training = True


def step_without_hooks(optimizer: LightningOptimizer) -> None:
    """`optimizer.step()` minus the strategy's wrappers: the step-count hooks Lightning's
    manual optimisation installs around every step, and the bare optimizer's step between."""
    optimizer._on_before_step()
    optimizer.optimizer.step()
    optimizer._on_after_step()


def spawns_script_copies(strategy: pl.strategies.Strategy) -> bool:
    """Will the strategy start ranks > 0 by running this script again as subprocesses (ddp
    with no SLURM/torchrun environment creating the processes)?"""
    launcher = getattr(strategy, "launcher", None)
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
    )
