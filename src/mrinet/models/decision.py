"""Decision rules for tissue maps: which class a voxel gets from its logits, chosen for Dice.

A classifier trained with inverse-frequency class weights learns p_w(c | x) ~ w_c p(c | x): its
argmax carries the weighting's bias into the map (rare classes called far too often). Adding
log-priors back (logit adjustment, Menon et al. 2021) undoes it; per-class offsets tuned on the
validation split go one step further and maximise macro Dice itself. Plain torch, no Lightning.
"""

from __future__ import annotations

import numpy as np
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


def _macro_dice(confmats: torch.Tensor) -> torch.Tensor:
    """Macro Dice (classes present in the truth) of (..., C, C) confusion matrices -> (...)."""
    tp = confmats.diagonal(dim1=-2, dim2=-1)
    support, predicted = confmats.sum(-1), confmats.sum(-2)
    dice = 2 * tp / (support + predicted).clamp(min=1)
    present = (support > 0).to(dice.dtype)
    return (dice * present).sum(-1) / present.sum(-1).clamp(min=1)


def _best_offset(
    logits: torch.Tensor, target: torch.Tensor, offsets: torch.Tensor, c: int, lo: float, hi: float
) -> tuple[float, float]:
    """The offset of class c in [lo, hi] maximising macro Dice, the others fixed: exact.

    A voxel goes to class c once o_c passes its threshold t = max_{j != c}(z_j + o_j) - z_c, and
    to its best other class r below it. Sorting the thresholds, the confusion matrix at every
    breakpoint is a cumulative sum of per-voxel changes (+1 at (y, c), -1 at (y, r)): all
    candidate offsets are scored at once, with no grid.
    """
    n, num_classes = logits.shape
    shifted = logits + offsets
    others = shifted.clone()
    others[:, c] = -torch.inf
    best_other, r = others.max(1)
    t = best_other - logits[:, c]
    order = t.argsort()
    t, y, r = t[order], target[order], r[order]
    base = batch_confusion(r, y, num_classes).float()  # every voxel below its threshold
    # only three entries of the (C, C) matrix move with o_c: TP_c, predicted_c, and per voxel
    # the truth row it leaves; score Dice from running counts (float32 holds counts exactly)
    gain_c = (y == c).float().cumsum(0)  # voxels of class c now called c
    moved = torch.ones(n).cumsum(0)  # voxels now called c
    lost_r = torch.zeros(n, num_classes)
    lost_r[torch.arange(n), r] = (y == r).float()
    lost_tp = lost_r.cumsum(0)  # true positives other classes lose
    left_r = torch.zeros(n, num_classes)
    left_r[torch.arange(n), r] = 1.0
    left_pred = left_r.cumsum(0)  # predictions other classes lose
    zero = torch.zeros(1, num_classes)
    tp = base.diagonal().reshape(1, -1) - torch.cat([zero, lost_tp])
    predicted = base.sum(0).reshape(1, -1) - torch.cat([zero, left_pred])
    tp[:, c] = base[c, c] + torch.cat([torch.zeros(1), gain_c])
    predicted[:, c] = base[:, c].sum() + torch.cat([torch.zeros(1), moved])
    support = base.sum(1).reshape(1, -1)
    dice = 2 * tp / (support + predicted).clamp(min=1)
    present = (support > 0).float()
    scores = (dice * present).sum(1) / present.sum().clamp(min=1)
    # row k is reached by offsets in (t[k-1], t[k]]: keep rows whose interval meets [lo, hi]
    lower = torch.cat([torch.tensor([-torch.inf]), t.double()])
    upper = torch.cat([t.double(), torch.tensor([torch.inf])])
    feasible = (upper >= lo) & (lower <= hi) & (upper > lower)
    scores = torch.where(feasible, scores, torch.full_like(scores, -1.0))
    k = int(scores.argmax())
    a, b = max(float(lower[k]), lo), min(float(upper[k]), hi)
    value = (a + b) / 2 if np.isfinite(a) and np.isfinite(b) else (a if np.isfinite(a) else b)
    return value, float(scores[k])


def tune_offsets(
    logits: torch.Tensor,
    target: torch.Tensor,
    start: torch.Tensor | None = None,
    span: float = 3.0,
    rounds: int = 3,
) -> torch.Tensor:
    """Per-class offsets (C,) maximising macro Dice of argmax(logits + offsets) on (N, C) logits.

    Coordinate ascent within +-`span` of `start`, one class at a time (each step exact over
    all breakpoints, `_best_offset`), `rounds` times; the last class keeps its start value
    (offsets are defined up to a constant). Voxels no offset in range can move (top logit ahead
    of every other by more than 2 span) are counted once. ~10 ms for 250k voxels, 3 classes.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: extra threads only contend (6 s vs 2 s on 2 busy cores)
    try:
        return _tune_offsets(logits, target, start, span, rounds)
    finally:
        torch.set_num_threads(threads)


def _tune_offsets(logits, target, start, span: float, rounds: int) -> torch.Tensor:
    logits = logits.detach().float().cpu()
    target = target.detach().cpu()
    num_classes = logits.shape[1]
    start = torch.zeros(num_classes) if start is None else start.detach().float().cpu().clone()
    if num_classes < 2:
        return start
    shifted = logits + start
    top2 = shifted.topk(2, dim=1).values
    fixed = (top2[:, 0] - top2[:, 1]) > 2 * span + 1e-6
    base = batch_confusion(shifted[fixed].argmax(1), target[fixed], num_classes).double()
    logits, target = logits[~fixed], target[~fixed]

    def score(offsets: torch.Tensor) -> float:
        confmat = base + batch_confusion((logits + offsets).argmax(1), target, num_classes)
        return float(_macro_dice(confmat))

    offsets = start.clone()
    best = score(offsets)
    for _ in range(rounds):
        improved = False
        for c in range(num_classes - 1):
            lo, hi = float(start[c]) - span, float(start[c]) + span
            value, _ = _best_offset(logits, target, offsets, c, lo, hi)
            trial = offsets.clone()
            trial[c] = value
            trial_score = score(trial)  # with the fixed voxels counted
            if trial_score > best + 1e-9:
                best, offsets, improved = trial_score, trial, True
        if not improved:
            break
    return offsets
