"""Per-image transforms of 2-D magnitude images, batched: percentile scaling and flips."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mrinet.errors import check_choice

NORMALIZATIONS = ("percentile", "meanstd", "none")
FLIPS = {"horizontal": -1, "vertical": -2}
PERCENTILE_PIXELS = 1 << 16  # larger images: percentile estimated on a regular subgrid


def normalize_images(
    x: torch.Tensor, method: str = "percentile", percentile: float = 99.0, inplace: bool = False
) -> torch.Tensor:
    """Per-image intensity normalisation of (B, ..., H, W) magnitude images (float32).

    `percentile` (default) divides each image by its `percentile`-th intensity: zero stays zero
    (background stays background), the tissue lands near [0, 1] whatever the scanner or solver
    scaling, and unlike the maximum one bright pixel cannot set the scale. `meanstd` subtracts
    the mean and divides by the std (depends on how much background the image holds).
    `inplace` overwrites `x` (no second copy of a large tensor: fresh memory costs page faults).
    """
    if method == "none" or x.numel() == 0:
        return x
    if method == "percentile":
        scale = torch.from_numpy(percentile_scales(x.detach().cpu().numpy(), percentile))
        scale = scale.to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return x.div_(scale) if inplace else x / scale
    if method == "meanstd":
        flat = x.reshape(x.shape[0], -1)
        mean, std = flat.mean(1), flat.std(1).clamp(min=1e-12)
        shape = (-1, *([1] * (x.ndim - 1)))
        if inplace:
            return x.sub_(mean.view(shape)).div_(std.view(shape))
        return (x - mean.view(shape)) / std.view(shape)
    check_choice(method, NORMALIZATIONS, "data.normalization")
    raise AssertionError(f"normalization {method!r} has no implementation")


def percentile_scales(images: np.ndarray, percentile: float) -> np.ndarray:
    """Divisor per image of (B, ..., H, W) float32 (any strides) for `percentile` normalisation.

    The `percentile`-th intensity (of a regular subgrid with at most PERCENTILE_PIXELS pixels:
    1/4 of the pixels of a 320x320 image is plenty); an image whose percentile is not positive
    is divided by its largest magnitude instead, so it is never divided by zero. (B,) float32.
    """
    sample = images
    while sample.shape[-1] * sample.shape[-2] > PERCENTILE_PIXELS:
        sample = sample[..., ::2, ::2]
    n = int(np.prod(sample.shape[1:]))
    position = percentile / 100.0 * (n - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, n - 1)
    stats = row_order_statistics(sample, lower, upper).astype(np.float64)
    value = (stats[:, 0] + (position - lower) * (stats[:, 1] - stats[:, 0])).astype(images.dtype)
    bad = np.flatnonzero(~(value > 0))
    for b in bad:  # rare: mostly-empty images
        value[b] = np.abs(images[b]).max()
    return np.maximum(value, images.dtype.type(1e-12))


def row_order_statistics(sample: np.ndarray, lower: int, upper: int) -> np.ndarray:
    """Values of ascending rank `lower` and `upper` of each image of (B, ...) (any strides).

    Exactly numpy.partition's (NaN sorts last), at a fraction of its cost for high ranks: a
    threshold from a coarse subsample keeps only the pixels that can hold those ranks (every
    pixel below it ranks lower); an image where too few pass is partitioned whole. (B, 2).
    """
    batch = sample.shape[0]
    flat = np.ascontiguousarray(sample).reshape(batch, -1)  # strided reads cost more than this
    n = flat.shape[1]
    top = n - lower  # pixels of rank >= lower
    out = np.empty((batch, 2), dtype=flat.dtype)
    values, rows = [flat[b] for b in range(batch)], [lower] * batch
    if n >= 4096 and top * 32 <= n:
        coarse = flat[:, ::16]
        m = coarse.shape[1]
        k = max(m - 1 - 3 * int(np.ceil(top * m / n)), 0)  # ~3x the needed pixels pass
        threshold = np.partition(coarse, k, axis=1)[:, k : k + 1]
        keep = np.less(flat, threshold)
        keep = np.logical_not(keep, out=keep)  # not `>=`: NaN is kept, as partition sorts it last
        where = np.flatnonzero(keep)
        kept = flat.reshape(-1)[where]
        bounds = np.searchsorted(where, np.arange(batch + 1) * n)
        for b in range(batch):
            count = int(bounds[b + 1] - bounds[b])
            if count >= top:
                values[b], rows[b] = kept[bounds[b] : bounds[b + 1]], lower - (n - count)
    for b in range(batch):
        part = np.partition(values[b], [rows[b], rows[b] + upper - lower])
        out[b] = part[rows[b]], part[rows[b] + upper - lower]
    return out


def flip_codes(n: int, flips: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Per image (n,) int64: bit k set = apply flip k of `flips` (each with probability 1/2)."""
    codes = torch.zeros(n, dtype=torch.int64)
    for k in range(len(flips)):
        codes |= (torch.rand(n, generator=generator) < 0.5).long() << k
    return codes


def apply_flips(
    x: torch.Tensor, codes: torch.Tensor, flips: Sequence[str], chunk: int = 64
) -> torch.Tensor:
    """Flip images of (B, C, H, W) in place as `codes` (B,) say (see flip_codes).

    Vectorised: per combination of flips, its images are gathered, flipped and written back in
    one call per `chunk` images (small temporaries are reused by the allocator; large ones
    cost page faults), never one call per image.
    """
    for start in range(0, x.shape[0], chunk):
        part, part_codes = x[start : start + chunk], codes[start : start + chunk]
        for code in part_codes.unique().tolist():
            if code:
                dims = [FLIPS[name] for k, name in enumerate(flips) if code >> k & 1]
                chosen = part_codes == code
                part[chosen] = part[chosen].flip(dims)
    return x


def random_flips(x: torch.Tensor, flips: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right / up-down with probability 1/2 each, in place.

    Flips keep the phase-encode direction of 1-D undersampling artifacts (a transpose would not).
    """
    return apply_flips(x, flip_codes(x.shape[0], flips, generator), flips)
