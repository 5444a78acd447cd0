"""The costs a Classifier can train with, chosen by name (`model.loss`): plain torch functions."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def quadratic_cost(
    logits: torch.Tensor,
    target: torch.Tensor,
    output_activation: str,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The lecture's C = 1/(2N) sum_x ||y_x - a_x||^2 with a = sigma(z^L) and one-hot y."""
    a = torch.sigmoid(logits) if output_activation == "sigmoid" else torch.softmax(logits, dim=1)
    y = F.one_hot(target, a.shape[1]).to(a.dtype)
    per_sample = 0.5 * (y - a).pow(2).sum(1)
    if weight is not None:
        per_sample = per_sample * weight[target]
    return per_sample.mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of 2 sum(p y) / (sum p + sum y) with p = softmax(logits) (N, C) and
    one-hot targets (N,): the batch's Dice made differentiable (Milletari et al. 2016, V-Net);
    eps keeps a class absent from the batch at loss 0 when predicted absent."""
    p = torch.softmax(logits, dim=1)
    y = F.one_hot(target, p.shape[1]).to(p.dtype)
    overlap = (p * y).sum(0)
    dice = (2 * overlap + eps) / (p.sum(0) + y.sum(0) + eps)
    return 1 - dice.mean()


def cross_entropy(logits, target, output_activation, weight=None) -> torch.Tensor:
    """Softmax log-loss, class-weighted (the output activation is always the softmax)."""
    return F.cross_entropy(logits, target, weight=weight)


def cross_entropy_dice(logits, target, output_activation, weight=None) -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice averaged over the classes), the usual cost of segmentation
    nets (nnU-Net): the small structures weigh as much as the large one."""
    return F.cross_entropy(logits, target, weight=weight) + soft_dice_loss(logits, target)


# name (model.loss) -> f(logits (N, C), target (N,), output_activation, weight (C,) | None)
LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": cross_entropy,
    "quadratic": quadratic_cost,
    "cross_entropy_dice": cross_entropy_dice,
}


def labelled_voxels(logits: torch.Tensor, target: torch.Tensor):
    """Dense logits (B, C, X, Y, Z) and targets (B, X, Y, Z) (-1: no class) -> the labelled
    voxels' logits (N, C) and classes (N,), so costs and metrics are the voxel classifier's."""
    keep = target >= 0
    return logits.movedim(1, -1)[keep], target[keep]
