"""Figures for TensorBoard (matplotlib, imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Sequence

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
