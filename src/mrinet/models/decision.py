"""Decision rules for tissue maps: which class a voxel gets from its logits, chosen for Dice.

A classifier trained with inverse-frequency class weights learns p_w(c | x) ~ w_c p(c | x): its
argmax carries the weighting's bias into the map (rare classes called far too often). Adding
log-priors back (logit adjustment, Menon et al. 2021) undoes it; per-class offsets tuned on the
validation split go one step further and maximise macro Dice itself. Plain torch, no Lightning.
"""

from __future__ import annotations

import torch

from mrinet.models.metrics import batch_confusion


def weighting_offsets(class_weight: torch.Tensor) -> torch.Tensor:
    """Logit offsets (C,) that undo a class-weighted loss: -log w_c (0 for unweighted)."""
    w = torch.as_tensor(class_weight, dtype=torch.float64)
    return (-torch.log(w.clamp(min=1e-12))).float()


def dice_macro_of(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Macro Dice (classes present in `target`) of a hard prediction (N,) against (N,)."""
    confmat = batch_confusion(pred, target, num_classes).double()
    tp, support, predicted = confmat.diag(), confmat.sum(1), confmat.sum(0)
    dice = 2 * tp / (support + predicted).clamp(min=1)
    present = support > 0
    return float(dice[present].mean()) if present.any() else 0.0


def tune_offsets(
    logits: torch.Tensor,
    target: torch.Tensor,
    start: torch.Tensor | None = None,
    span: float = 3.0,
    step: float = 0.05,
    rounds: int = 3,
) -> torch.Tensor:
    """Per-class offsets (C,) maximising macro Dice of argmax(logits + offsets) on (N, C) logits.

    Coordinate ascent on a grid (+-`span` around the current value, `step` apart), one class at
    a time, `rounds` times; the last class stays at its start value (offsets are defined up to a
    constant). Deterministic; ~1 s for 250k voxels and 3 classes.
    """
    logits = logits.float()
    num_classes = logits.shape[1]
    offsets = torch.zeros(num_classes) if start is None else start.detach().float().clone()
    best = dice_macro_of((logits + offsets).argmax(1), target, num_classes)
    grid = torch.arange(-span, span + step / 2, step)
    for _ in range(rounds):
        improved = False
        for c in range(num_classes - 1):
            centre = float(offsets[c])
            for delta in grid:
                trial = offsets.clone()
                trial[c] = centre + float(delta)
                score = dice_macro_of((logits + trial).argmax(1), target, num_classes)
                if score > best + 1e-9:
                    best, offsets, improved = score, trial, True
        if not improved:
            break
    return offsets
