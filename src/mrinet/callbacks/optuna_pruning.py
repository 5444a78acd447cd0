"""Report each validation epoch to the trial's Optuna study and stop when the pruner says so.

Added by mrinet.train to runs started by mrinet's Optuna sweeper (the sweeper tells the job
its trial through the environment: mrinet.run.trial_report). Rank 0 alone reports; its verdict
is broadcast so every DDP rank stops at the same epoch end. A pruned run ends like an early
stopped one: its checkpoints stay, the best one is tested, and `<run dir>/trial.json` says
pruned with the epochs it ran (summary.csv reads it). A requeued SLURM run resumes reporting
with the next epoch: a step the study already has is not reported again.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pytorch_lightning as pl

from mrinet.errors import ConfigError
from mrinet.io.trial_file import write_trial_file

log = logging.getLogger("mrinet.sweep")


class OptunaPruning(pl.Callback):
    """Per-epoch `monitor` -> the study; `trainer.should_stop` on the pruner's verdict."""

    def __init__(self, monitor: str, run_dir: str | Path, reporter=None) -> None:
        """`reporter`: mrinet.run.trial_report.TrialReporter on rank 0 (None elsewhere), built
        by the run layer, which knows the study."""
        self.monitor, self.run_dir, self.reporter = monitor, Path(run_dir), reporter
        self.started = time.time()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val"))
            raise ConfigError(
                f"optimized_metric {self.monitor!r} is not logged during validation, so the "
                f"pruner has nothing to compare (logged there: {logged})",
                "optimized_metric",
                f"set optimized_metric to one of {logged}, or hydra.sweeper.pruner=none",
            )
        value = float(value)
        epoch = int(trainer.current_epoch)
        prune = False
        if trainer.is_global_zero and self.reporter is not None and math.isfinite(value):
            prune = self.reporter.report(epoch, value)
            if prune:
                self.reporter.mark_pruned(epoch)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            log.info(
                "trial pruned after epoch %d (%s=%.5g): stopping", epoch + 1, self.monitor, value
            )
            trainer.should_stop = True
        if trainer.is_global_zero:
            self._write(trainer, epoch, value, prune)

    def _write(self, trainer: pl.Trainer, epoch: int, value: float, pruned: bool) -> None:
        reporter = self.reporter
        accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
        write_trial_file(
            self.run_dir,
            {
                "study": reporter.study_name if reporter else None,
                "trial": reporter.number if reporter else None,
                "epochs": epoch + 1,
                "max_epochs": trainer.max_epochs,
                "last_value": value,
                "pruned": bool(pruned or (reporter is not None and reporter.pruned_at is not None)),
                "accelerator": "gpu" if accelerator in ("cuda", "gpu", "mps") else accelerator,
                "devices": int(trainer.world_size),
                "train_s": time.time() - self.started,
            },
        )
