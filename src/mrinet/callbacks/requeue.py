"""Preemption and time limits on SLURM that a run survives at any instant (Lightning callbacks).

RequeueAtSafePoint replaces Lightning's requeue-signal handler (under SLURMEnvironment with
auto_requeue, i.e. every SLURM job unless switched off): the signal is recorded
(mrinet.slurm.signals) and acted on at the next safe point, on every rank at the same one
(the end of a training step that is not the epoch's last, if the loader is resumable; else
the end of the epoch): checkpoint `<run dir>/hpc_ckpt_<n>.ckpt` (written to a temporary, then renamed),
flush (not close) the loggers, `scontrol requeue`, and leave by SystemExit. SystemExit is
not an Exception, so neither Hydra nor submitit records the interrupted job as failed (no
result file is written); the launcher keeps waiting and the requeued job resumes from the
checkpoint (Lightning picks the newest hpc_ckpt in the run dir).

A SIGTERM (preemption with PreemptMode=REQUEUE, where SLURM requeues the job itself; scancel;
the end of a time limit without the notice) also gets an hpc checkpoint at the next step end
before Lightning stops the run, so a job SLURM requeues resumes from there.

RevalidateAfterRestart covers checkpoints already saved inside the window between an epoch's
validation and its end (by Lightning's own handler, or any other tool): Lightning restores
such a run straight to the end of the epoch, where early stopping (strict) found no
`val/...` metric and raised. The validation of that epoch is run again instead, so early
stopping and the best checkpoint see what an uninterrupted run saw.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

import pytorch_lightning as pl

from mrinet.compat.lightning import (
    cluster_environment,
    is_stateful,
    next_hpc_checkpoint_path,
    rerun_validation,
    train_loaders,
    validates_this_epoch,
)
from mrinet.slurm import signals

log = logging.getLogger("mrinet.slurm")


class Requeued(SystemExit):
    """The job checkpointed and put itself back in the SLURM queue; this process ends here."""


def slurm_job_id() -> str | None:
    """`<array>_<task>` for an array task, else SLURM_JOB_ID (what scontrol requeue takes)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def _auto_requeue_env(trainer: pl.Trainer):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    env = cluster_environment(trainer)
    return env if isinstance(env, SLURMEnvironment) and env.auto_requeue else None


def _resumable(trainer: pl.Trainer) -> bool:
    """Every training loader can continue mid-epoch (Lightning's state_dict protocol)."""
    loaders = train_loaders(trainer)
    return loaders is not None and all(is_stateful(dl) for dl in loaders)


class RequeueAtSafePoint(pl.Callback):
    """On SLURM's requeue signal: checkpoint between two steps, requeue, exit (see module doc)."""

    def __init__(self) -> None:
        signals.install_if_slurm()  # from the start of the job: data simulation included
        self.active, self._saved_on_sigterm = False, False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        env = _auto_requeue_env(trainer)
        self.active = env is not None and slurm_job_id() is not None
        if not self.active:
            return
        signals.install(env.requeue_signal or signal.SIGUSR1)  # after Lightning installed its own
        self._maybe_requeue(trainer, save=trainer.global_step > 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # mid-epoch only with a resumable loader, and never at an epoch's last step (Lightning
        # restores that one past the epoch's validation): that epoch's end is the next point
        if self.active and batch_idx < trainer.num_training_batches - 1 and _resumable(trainer):
            self._maybe_requeue(trainer, save=True)
            sigterm = trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False)
            if sigterm and not self._saved_on_sigterm:
                # SIGTERM (preemption with PreemptMode=REQUEUE, scancel): SLURM requeues or
                # ends the job itself; Lightning stops after this step: keep this step's state
                self._saved_on_sigterm = True
                self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.active:
            self._maybe_requeue(trainer, save=True)

    def _save(self, trainer: pl.Trainer) -> None:
        path = next_hpc_checkpoint_path(trainer)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
        trainer.save_checkpoint(tmp)  # every rank (collective); rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)  # a kill during the write never leaves a partial hpc_ckpt
            log.info("saved %s at step %d", path, trainer.global_step)
        for logger in trainer.loggers:
            logger.save()  # flushed, left open: the process may still log until it exits

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.active and signals.received() is not None:
            log.warning("requeue signal after the last training step: finishing the run instead")

    def _maybe_requeue(self, trainer: pl.Trainer, save: bool) -> None:
        landed = signals.received() is not None
        if not trainer.strategy.reduce_boolean_decision(landed, all=False):
            return
        job = slurm_job_id()
        if save:
            self._save(trainer)
        if trainer.is_global_zero:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode != 0:
                log.error("scontrol requeue %s failed: %s", job, result.stderr.strip())
            else:
                log.info("requeued SLURM job %s; this run stops here", job)
        raise Requeued(0)


class RevalidateAfterRestart(pl.Callback):
    """Re-run an epoch's validation when a resumed run reaches epoch end without its metrics."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

        monitors = {
            cb.monitor
            for cb in trainer.callbacks
            if isinstance(cb, (EarlyStopping, ModelCheckpoint)) and cb.monitor
        }
        missing = [m for m in monitors if m not in trainer.callback_metrics]
        if not missing or not validates_this_epoch(trainer):
            return
        log.info(
            "resumed at the end of epoch %d without %s: running its validation again",
            trainer.current_epoch,
            ", ".join(sorted(missing)),
        )
        rerun_validation(trainer)
