"""Figures for TensorBoard (matplotlib, imported only when a figure is drawn) and their schedule."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np


def confusion_matrix_figure(confmat: np.ndarray, class_names: Sequence[str], title: str):
    """Row-normalised confusion matrix (true rows, predicted columns) with counts in each cell."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    confmat = np.asarray(confmat, dtype=np.int64)
    rows = confmat.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(class_names), 1.2 + 1.0 * len(class_names)))
    ax.imshow(confmat / rows, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            share = confmat[i, j] / rows[i, 0]
            color = "white" if share > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{confmat[i, j]}\n{share:.2f}",
                ha="center",
                va="center",
                color=color,
                fontsize=8,
            )
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def tissue_map_figure(
    t1w: np.ndarray, true: np.ndarray, predicted: np.ndarray, class_names, title: str
):
    """Axial, coronal and sagittal slices through the volume centre: T1w, true and predicted classes.

    `true`/`predicted` hold class indices 0..K-1 and -1 outside the classified voxels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colors = ListedColormap(
        ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628"][: len(class_names)]
    )
    centre = [s // 2 for s in t1w.shape]
    views = {
        "axial": lambda v: v[:, :, centre[2]].T,
        "coronal": lambda v: v[:, centre[1], :].T,
        "sagittal": lambda v: v[centre[0], :, :].T,
    }
    fig, axes = plt.subplots(3, 3, figsize=(9, 9))
    for col, (view, cut) in enumerate(views.items()):
        for row, (name, volume) in enumerate(
            (("T1w", t1w), ("true", true), ("predicted", predicted))
        ):
            ax = axes[row, col]
            ax.imshow(cut(t1w), cmap="gray", origin="lower")
            if row:
                labels = cut(volume).astype(float)
                labels[labels < 0] = np.nan
                ax.imshow(
                    labels,
                    cmap=colors,
                    vmin=-0.5,
                    vmax=len(class_names) - 0.5,
                    origin="lower",
                    alpha=0.8,
                )
            ax.set_title(f"{name} ({view})", fontsize=9)
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors(i)) for i in range(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=len(class_names), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


class FigureSchedule:
    """Which validation epochs draw figures (confusion matrix, examples, ROC, tissue maps).

    `every_n_epochs=n`: epochs 0, n, 2n, ... and the last. `None` (the default of the shipped
    models): a time budget; epoch 0 and the last draw, and an epoch in between draws when the
    figures drawn so far plus the last figure epoch's cost stay within `share` (5 %) of the
    time since training started, so figures never cost a long run more than ~5 %.
    Drawing code reports its time with `with schedule.timed(): ...`.
    """

    def __init__(self, every_n_epochs: int | None = None, share: float = 0.05) -> None:
        self.every_n_epochs, self.share = every_n_epochs, float(share)
        self.start()

    def start(self) -> None:
        """Restart the clock (at the start of training)."""
        self.t0, self.spent, self.cost, self.running = time.perf_counter(), 0.0, 0.0, 0.0
        self.decided: tuple[int, bool] | None = None

    def now(self, epoch: int, last_epoch: int | None) -> bool:
        """Do this epoch's figures get drawn? (one answer per epoch, for every figure)"""
        if self.decided is not None and self.decided[0] == epoch:
            return self.decided[1]
        if self.running:  # the last figure epoch's drawing time: the estimate of the next
            self.cost, self.running = self.running, 0.0
        if epoch == 0 or epoch == last_epoch:
            draw = True
        elif self.every_n_epochs:
            draw = epoch % self.every_n_epochs == 0
        else:
            elapsed = time.perf_counter() - self.t0
            draw = self.spent + self.cost <= self.share * elapsed
        self.decided = (epoch, draw)
        return draw

    @contextmanager
    def timed(self):
        """Count the time of a drawing against the budget."""
        start = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - start
            self.spent += took
            self.running += took
