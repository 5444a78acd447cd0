"""Callbacks mrinet adds to every run: progress bar choice and self-describing checkpoints."""

from __future__ import annotations

import sys

import pytorch_lightning as pl


def progress_bar(kind: str = "auto", refresh_rate: int = 50) -> pl.Callback:
    """Rich bar in a terminal; a TQDM bar refreshing every `refresh_rate` steps in log files."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    if kind == "auto":
        kind = "rich" if sys.stdout.isatty() else "tqdm"
    if kind == "rich":
        return RichProgressBar(refresh_rate=1, leave=True)
    if kind == "tqdm":
        return TQDMProgressBar(refresh_rate=refresh_rate)
    if kind == "none":
        return TQDMProgressBar(refresh_rate=0)  # a bar with refresh 0 is Lightning's "disabled"
    raise ValueError(f"callbacks.progress_bar.kind={kind!r}: use auto, rich, tqdm or none")


class RunInfoInCheckpoint(pl.Callback):
    """Store the resolved model and data configs in every checkpoint under the key 'mrinet'.

    eval and predict rebuild the model (and, for eval, the data) from a checkpoint alone, and
    every value is a plain type, so checkpoints load with torch.load(weights_only=True).
    """

    def __init__(self, info: dict) -> None:
        self.info = info

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["mrinet"] = self.info
