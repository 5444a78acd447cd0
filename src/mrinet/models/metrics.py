"""Classification metrics derived from one confusion matrix (cheap to update, exact to sync)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_metrics(confmat: torch.Tensor, class_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Accuracy, balanced accuracy (macro recall), macro F1 and per-class F1/recall.

    `confmat[i, j]` counts samples of true class i predicted as j. Classes absent from the
    targets are left out of the macro averages (as sklearn's balanced_accuracy_score does).
    """
    confmat = confmat.double()
    tp = confmat.diag()
    support = confmat.sum(1)
    predicted = confmat.sum(0)
    total = confmat.sum().clamp(min=1)
    recall = tp / support.clamp(min=1)
    precision = tp / predicted.clamp(min=1)
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    present = support > 0
    out = {
        "acc": tp.sum() / total,
        "bal_acc": recall[present].mean() if present.any() else total.new_zeros(()),
        "f1_macro": f1[present].mean() if present.any() else total.new_zeros(()),
    }
    for i, name in enumerate(class_names):
        out[f"f1_{name}"] = f1[i]
        out[f"recall_{name}"] = recall[i]
        out[f"precision_{name}"] = precision[i]
    return {k: v.float() for k, v in out.items()}
