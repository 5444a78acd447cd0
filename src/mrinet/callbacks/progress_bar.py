"""Which progress bar a run shows: rich in a terminal, plain lines in log files."""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar

from mrinet.errors import check_choice


def progress_bar(kind: str = "auto", refresh_rate: int = 50) -> pl.Callback:
    """Rich bar in a terminal; plain lines every `refresh_rate` steps off a terminal (SLURM logs:
    a TQDM bar there wrote carriage-return-joined updates and cursor escape codes)."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    if kind == "auto":
        kind = "rich" if sys.stdout.isatty() else "lines"
    if kind == "rich":
        return RichProgressBar(refresh_rate=1, leave=True)
    if kind == "lines":
        return LineProgress(refresh_rate=refresh_rate)
    if kind == "tqdm":
        return TQDMProgressBar(refresh_rate=refresh_rate)
    if kind == "none":
        return TQDMProgressBar(refresh_rate=0)  # a bar with refresh 0 is Lightning's "disabled"
    check_choice(kind, ("auto", "rich", "lines", "tqdm", "none"), "callbacks.progress_bar.kind")
    raise AssertionError(f"progress bar {kind!r} has no implementation")


class LineProgress(ProgressBar):
    """Plain text lines, nothing else: `epoch 2/10 step 150/700 (812 steps/s) train/loss=0.31`
    every `refresh_rate` training steps and at an epoch's last step, then one validation line."""

    def __init__(self, refresh_rate: int = 50) -> None:
        super().__init__()
        self.refresh_rate, self._enabled, self._start = max(int(refresh_rate), 1), True, 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, trainer: pl.Trainer, text: str, pl_module: pl.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = self.get_metrics(trainer, pl_module)
        values = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in metrics.items()
            if k != "v_num"
        )
        print(f"{text} {values}".rstrip(), flush=True)

    def _epoch(self, trainer: pl.Trainer) -> str:
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        return f"epoch {trainer.current_epoch + 1}/{total}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, total = batch_idx + 1, trainer.num_training_batches
        if step % self.refresh_rate and step != total:
            return
        rate = step / max(time.monotonic() - self._start, 1e-9)
        total_text = total if total != float("inf") else "?"
        self._print(
            trainer,
            f"{self._epoch(trainer)} step {step}/{total_text} ({rate:.3g} steps/s)",
            pl_module,
        )

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._print(trainer, f"{self._epoch(trainer)} validated", pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._print(trainer, "test done", pl_module)
