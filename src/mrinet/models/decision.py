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

    Coordinate ascent within +-`span` of `start`, one class at a time, `rounds` times: a coarse
    grid (5 `step`s apart), then `step`s around the best; the last class keeps its start value (offsets are defined up to a constant).
    Voxels whose decision no offset in range can change (top logit ahead of every other by more
    than 2 span) are counted once, so a pass costs ~the uncertain voxels only. Deterministic.
    """
    logits = logits.detach().float()
    target = target.detach()
    num_classes = logits.shape[1]
    start = torch.zeros(num_classes) if start is None else start.detach().float().cpu().clone()
    logits, target = logits.cpu(), target.cpu()
    shifted = logits + start
    top2 = shifted.topk(min(2, num_classes), dim=1).values
    fixed = (top2[:, 0] - top2[:, -1]) > 2 * span + 1e-6 if num_classes > 1 else None
    if fixed is not None and fixed.any():
        base = batch_confusion(shifted[fixed].argmax(1), target[fixed], num_classes).double()
        logits, target = logits[~fixed], target[~fixed]
    else:
        base = torch.zeros(num_classes, num_classes, dtype=torch.float64)

    def score(offsets: torch.Tensor) -> float:
        confmat = base + batch_confusion((logits + offsets).argmax(1), target, num_classes)
        tp, support, predicted = confmat.diag(), confmat.sum(1), confmat.sum(0)
        dice = 2 * tp / (support + predicted).clamp(min=1)
        present = support > 0
        return float(dice[present].mean()) if present.any() else 0.0

    offsets = start.clone()
    best = score(offsets)
    coarse = torch.arange(-span, span + step / 2, 5 * step)
    fine = torch.arange(-2 * step, 2 * step + step / 2, step)
    for _ in range(rounds):
        improved = False
        for c in range(num_classes - 1):
            for grid, centre in ((coarse, float(start[c])), (fine, None)):
                centre = float(offsets[c]) if centre is None else centre
                for delta in grid:
                    value_c = min(
                        max(centre + float(delta), float(start[c]) - span), float(start[c]) + span
                    )
                    trial = offsets.clone()
                    trial[c] = value_c
                    value = score(trial)
                    if value > best + 1e-9:
                        best, offsets, improved = value, trial, True
        if not improved:
            break
    return offsets
