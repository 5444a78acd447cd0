"""Classification metrics derived from one confusion matrix (cheap to update, exact to sync)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

# the keys of confusion_metrics: these scalars, then each per-class metric per class
SCALAR_METRICS = ("acc", "bal_acc", "f1_macro", "dice_macro")
PER_CLASS_METRICS = ("dice", "f1", "recall", "precision")


def confusion_metrics(confmat: torch.Tensor, class_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Accuracy, balanced accuracy (macro recall), per-class Dice/F1/recall/precision, macros.

    `confmat[i, j]` counts samples of true class i predicted as j. Dice of class c,
    2 |P_c & T_c| / (|P_c| + |T_c|), is the segmentation field's name for its F1; both are
    logged (`dice_<class>`, `dice_macro`: tissue maps; `f1_*`: classification). Classes absent
    from the targets are left out of the macro averages (as sklearn's balanced_accuracy_score).
    """
    confmat = confmat.double()
    tp = confmat.diag()
    support = confmat.sum(1)
    predicted = confmat.sum(0)
    total = confmat.sum().clamp(min=1)
    recall = tp / support.clamp(min=1)
    precision = tp / predicted.clamp(min=1)
    f1, f1_macro = dice_from_confusion(confmat)
    present = support > 0
    out = {
        "acc": tp.sum() / total,
        "bal_acc": recall[present].mean() if present.any() else total.new_zeros(()),
        "f1_macro": f1_macro,
    }
    out["dice_macro"] = out["f1_macro"]
    per_class = {"dice": f1, "f1": f1, "recall": recall, "precision": precision}
    for i, name in enumerate(class_names):
        for metric in PER_CLASS_METRICS:
            out[f"{metric}_{name}"] = per_class[metric][i]
    return {k: v.float() for k, v in out.items()}


def confusion_metric_names(class_names: Sequence[str] | None = None) -> list[str]:
    """The keys `confusion_metrics` returns; unknown class names give `<metric>_*` patterns
    (what a sweep checks its optimized_metric against before the data exists)."""
    names = list(SCALAR_METRICS)
    for name in class_names if class_names is not None else ["*"]:
        names += [f"{metric}_{name}" for metric in PER_CLASS_METRICS]
    return names


def dice_from_counts(
    tp: torch.Tensor, support: torch.Tensor, predicted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Dice 2 TP / (|T| + |P|) (..., C) and its mean over the classes present in the
    truth (...), from (..., C) counts: the one Dice formula of mrinet (0 for an empty class)."""
    dice = 2 * tp / (support + predicted).clamp(min=1)
    present = (support > 0).to(dice.dtype)
    return dice, (dice * present).sum(-1) / present.sum(-1).clamp(min=1)


def dice_from_confusion(confmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C, C) confusion counts (row = true class) -> per-class Dice (..., C) and macro Dice
    (...) over the classes present in the truth; integer counts are scored in float64."""
    if not confmat.is_floating_point():
        confmat = confmat.double()
    tp = confmat.diagonal(dim1=-2, dim2=-1)
    return dice_from_counts(tp, confmat.sum(-1), confmat.sum(-2))


class ConfusionCounts(Metric):
    """Confusion-matrix counts summed over steps and, under DDP, over processes.

    The model adds whole (C, C) count tensors (one `torch.bincount` per step, kept outside this
    Metric) once per epoch, so torchmetrics' per-update bookkeeping is paid once per epoch,
    while `compute()` still syncs exactly across ranks.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        zeros = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.add_state("confmat", default=zeros, dist_reduce_fx="sum")

    def update(self, counts: torch.Tensor) -> None:
        self.confmat += counts.to(self.confmat)

    def compute(self) -> torch.Tensor:
        return self.confmat

    def summed(self, counts: torch.Tensor) -> torch.Tensor:
        """This process's epoch counts -> the counts of all processes (then reset)."""
        self.update(counts)
        total = self.compute()
        self.reset()
        return total


def batch_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts of (true, predicted) pairs for one batch (row = true class)."""
    flat = target.reshape(-1) * num_classes + pred.reshape(-1)
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)
