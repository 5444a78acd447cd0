"""Which progress bar a run shows: rich in a terminal, plain lines in log files."""

from __future__ import annotations

import sys

import pytorch_lightning as pl

from mrinet.errors import check_choice


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
    check_choice(kind, ("auto", "rich", "tqdm", "none"), "callbacks.progress_bar.kind")
    raise AssertionError(f"progress bar {kind!r} has no implementation")
