"""Trivial-feature baseline: is a dataset separable by image statistics alone (a shortcut)?

Logistic regression on a few per-image statistics (background level, total variation,
high-frequency energy, ...). On an honest reconstruction-quality dataset it should be near
chance; a naive RSS reference, for example, is told from PI-CS by its background level alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mrinet.models.metrics import batch_confusion, confusion_metrics

FEATURE_NAMES = (
    "background_mean",
    "background_std",
    "mean",
    "std",
    "max",
    "zero_fraction",
    "total_variation",
    "high_frequency_energy",
)


def image_statistics(images: torch.Tensor, border: float = 0.08) -> torch.Tensor:
    """Per-image statistics (N, len(FEATURE_NAMES)) float64 of images (N, [1,] H, W).

    Background = a frame of width `border` * size along the edges (outside the anatomy);
    total variation = mean |dx| + mean |dy|; high-frequency energy = share of the k-space
    energy outside the central quarter of each axis.
    """
    x = images.double()
    if x.ndim == 4:
        x = x[:, 0]
    n, height, width = x.shape
    bh, bw = max(int(border * height), 1), max(int(border * width), 1)
    frame = torch.ones(height, width, dtype=torch.bool)
    frame[bh : height - bh, bw : width - bw] = False
    background = x[:, frame]
    flat = x.reshape(n, -1)
    tv = (x.diff(dim=-1).abs().mean((-2, -1))) + (x.diff(dim=-2).abs().mean((-2, -1)))
    power = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1)).abs().pow(2)
    low = torch.zeros(height, width, dtype=torch.bool)
    low[
        height // 2 - height // 8 : height // 2 + height // 8,
        width // 2 - width // 8 : width // 2 + width // 8,
    ] = True
    high_share = power[:, ~low].sum(1) / power.reshape(n, -1).sum(1).clamp(min=1e-30)
    return torch.stack(
        [
            background.mean(1),
            background.std(1),
            flat.mean(1),
            flat.std(1),
            flat.amax(1),
            (flat == 0).double().mean(1),
            tv,
            high_share,
        ],
        dim=1,
    )


@dataclass
class LogisticRegression:
    """Multinomial logistic regression on standardised features (weights (F, K), bias (K,))."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return ((features.double() - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Class index (N,) int64."""
        return self.logits(features).argmax(1)


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-3
) -> LogisticRegression:
    """Minimise mean cross-entropy + l2/2 ||W||^2 with L-BFGS (float64; convex, so exact)."""
    x = features.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-12)
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight + bias, labels.long())
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LogisticRegression(weight.detach(), bias.detach(), mean, std)


def balanced_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean recall over the classes present in `target`, computed as training logs it."""
    confmat = batch_confusion(pred.long(), target.long(), num_classes)
    return float(confusion_metrics(confmat, [str(k) for k in range(num_classes)])["bal_acc"])


def feature_baseline(
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int
) -> dict[str, float]:
    """Fit on splits["train"] (images, labels); accuracy and balanced accuracy on every split."""
    features = {name: image_statistics(x) for name, (x, _) in splits.items()}
    model = fit_logistic_regression(features["train"], splits["train"][1], num_classes)
    out: dict[str, float] = {}
    for name, (_, y) in splits.items():
        pred = model.predict(features[name])
        out[f"{name}/acc"] = float((pred == y).double().mean())
        out[f"{name}/bal_acc"] = balanced_accuracy(pred, y, num_classes)
    return out


def grouped_cross_validation(
    images: torch.Tensor, labels: torch.Tensor, groups: Sequence, num_classes: int
) -> dict[str, float]:
    """Leave-one-group-out accuracy of the baseline (groups = volumes, as the splits are).

    Every image is predicted by a model fitted on the other volumes only: a steadier estimate
    than one small test split (24-32 images), and no volume leaks between fit and prediction.
    """
    names = np.asarray(list(groups), dtype=str)
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} group names for {len(labels)} images")
    unique, codes = np.unique(names, return_inverse=True)
    if len(unique) < 2:
        raise ValueError("cross-validation needs images from at least two volumes")
    features = image_statistics(images)
    codes = torch.from_numpy(codes)
    pred = torch.empty_like(labels)
    for group in range(len(unique)):
        held = codes == group
        model = fit_logistic_regression(features[~held], labels[~held], num_classes)
        pred[held] = model.predict(features[held])
    return {
        "cv/acc": float((pred == labels).double().mean()),
        "cv/bal_acc": balanced_accuracy(pred, labels, num_classes),
        "cv/groups": float(len(unique)),
    }
