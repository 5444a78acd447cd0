"""Decision rules for tissue maps: which class a voxel gets from its logits, chosen for Dice.

A classifier trained with inverse-frequency class weights learns p_w(c | x) ~ w_c p(c | x): its
argmax carries the weighting's bias into the map (rare classes called far too often). Adding
log-priors back (logit adjustment, Menon et al. 2021) undoes it; per-class offsets tuned on the
validation split go one step further and maximise macro Dice itself. Plain torch, no Lightning.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrinet.models.metrics import batch_confusion, dice_from_confusion, dice_from_counts

# argmax | logit_adjusted (undo the class weights' bias: + log priors) | tuned (then per-class
# offsets tuned on each validation epoch for macro Dice, kept with the checkpoint)
DECISIONS = ("argmax", "logit_adjusted", "tuned")


def per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(C,) values shaped to broadcast over dim 1 of `like` ((N, C) or (B, C, X, Y, Z))."""
    return values.reshape(1, -1, *([1] * (like.ndim - 2))) if like.ndim > 2 else values


class DecisionRule(nn.Module):
    """Where a prediction comes from: logits -> class argmax(logits + logit_offset) (`decide`)
    and probabilities reweighted by exp(logit_offset), whose argmax is that class (`proba`).

    The offsets (C,) are a buffer saved with the checkpoint: zeros for `argmax`, -log w_c
    (undo the class weighting) for `logit_adjusted` and as the start of `tuned`, which re-fits
    them to each validation epoch's logits for macro Dice (`tune`). An empty buffer (a
    checkpoint from before the rule) is plain argmax. `activation`: how logits become
    probabilities (softmax; sigmoid renormalised for the quadratic cost on sigmoid outputs).
    """

    def __init__(self, rule: str = "argmax", activation: str = "softmax") -> None:
        super().__init__()
        self.rule, self.activation = rule, activation
        self.register_buffer("logit_offset", torch.zeros(0))
        self.register_load_state_dict_pre_hook(_take_saved_size)

    def start(self, num_classes: int, class_weight: torch.Tensor) -> torch.Tensor:
        """Offsets before any tuning: undo the class weighting unless rule=argmax."""
        if self.rule == "argmax" or not class_weight.numel():
            return torch.zeros(num_classes)
        return weighting_offsets(class_weight.cpu())

    def reset(self, num_classes: int, class_weight: torch.Tensor) -> None:
        """Start offsets for the data's classes (a loaded checkpoint's offsets are kept)."""
        if self.logit_offset.numel() != num_classes:
            self.logit_offset = self.start(num_classes, class_weight).to(self.logit_offset.device)

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) or (B, C, ...) -> predicted class (N,) or (B, ...)."""
        if self.logit_offset.numel():
            logits = logits + per_channel(self.logit_offset, logits)
        return logits.argmax(1)

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> class probabilities (dim 1) whose argmax is `decide` (export's graph too)."""
        a = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=1)
        if self.logit_offset.numel():
            a = a * per_channel(torch.exp(self.logit_offset - self.logit_offset.max()), a)
        return a / a.sum(1, keepdim=True).clamp(min=1e-12)

    def tune(
        self, logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets (C,) maximising macro Dice on (N, C) logits and their (C, C) confusion counts
        (computed once, by the tuning); nothing is changed here (the caller may broadcast)."""
        start = self.start(logits.shape[1], class_weight)
        offsets, counts = _tune(logits, target, start, span=3.0, rounds=3)
        return offsets.to(self.logit_offset.device), counts.to(target.device)


def offsets_at_top_level(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """A state-dict hook of the module holding the rule as `decision_rule`: its offsets are
    saved as `logit_offset`, the key checkpoints had before the rule."""
    state_dict[prefix + "logit_offset"] = state_dict.pop(prefix + "decision_rule.logit_offset")


def _take_saved_size(module, state_dict, prefix, *args) -> None:
    """The offsets' size is the checkpoint's (none: a checkpoint from before the rule)."""
    saved = state_dict.setdefault(prefix + "logit_offset", torch.zeros(0))
    module.logit_offset = torch.empty_like(saved, device=module.logit_offset.device)


def weighting_offsets(class_weight: torch.Tensor) -> torch.Tensor:
    """Logit offsets (C,) that undo a class-weighted loss: -log w_c (0 for unweighted)."""
    w = torch.as_tensor(class_weight, dtype=torch.float64)
    return (-torch.log(w.clamp(min=1e-12))).float()


def dice_macro_of(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Macro Dice (classes present in `target`) of a hard prediction (N,) against (N,)."""
    return float(dice_from_confusion(batch_confusion(pred, target, num_classes))[1])


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
    support = base.sum(1).reshape(1, -1).expand_as(tp)
    scores = dice_from_counts(tp, support, predicted)[1]
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
    return _tune(logits, target, start, span, rounds)[0]


def _tune(logits, target, start, span: float, rounds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`tune_offsets` and the (C, C) confusion counts under the offsets it returns."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: extra threads only contend (6 s vs 2 s on 2 busy cores)
    try:
        return _coordinate_ascent(logits, target, start, span, rounds)
    finally:
        torch.set_num_threads(threads)


def _coordinate_ascent(logits, target, start, span: float, rounds: int):
    logits = logits.detach().float().cpu()
    target = target.detach().cpu()
    num_classes = logits.shape[1]
    start = torch.zeros(num_classes) if start is None else start.detach().float().cpu().clone()
    if num_classes < 2:
        return start, batch_confusion(logits.argmax(1), target, num_classes)
    shifted = logits + start
    top2 = shifted.topk(2, dim=1).values
    fixed = (top2[:, 0] - top2[:, 1]) > 2 * span + 1e-6
    base = batch_confusion(shifted[fixed].argmax(1), target[fixed], num_classes).double()
    logits, target = logits[~fixed], target[~fixed]

    def score(offsets: torch.Tensor) -> tuple[float, torch.Tensor]:
        confmat = base + batch_confusion((logits + offsets).argmax(1), target, num_classes)
        return float(dice_from_confusion(confmat)[1]), confmat

    offsets = start.clone()
    best, counts = score(offsets)
    for _ in range(rounds):
        improved = False
        for c in range(num_classes - 1):
            lo, hi = float(start[c]) - span, float(start[c]) + span
            value, _ = _best_offset(logits, target, offsets, c, lo, hi)
            trial = offsets.clone()
            trial[c] = value
            trial_score, trial_counts = score(trial)  # with the fixed voxels counted
            if trial_score > best + 1e-9:
                best, offsets, counts, improved = trial_score, trial, trial_counts, True
        if not improved:
            break
    return offsets, counts.long()
