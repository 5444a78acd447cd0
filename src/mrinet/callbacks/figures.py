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
