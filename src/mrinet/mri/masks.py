"""Cartesian undersampling masks with fastMRI's semantics, seeded and reproducible per volume.

A mask function is a small callable holding only its sampling parameters. Calling it with the
k-space shape (..., H, W) and a seed (e.g. derived from the volume name) returns a float32 mask
broadcastable to that k-space: (1, W) for 1-D phase-encode masks along W, (H, W) for 2-D
Poisson-disc masks. `acceleration_of(mask)` reports the realised acceleration.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch


def seed_from_name(name: str) -> int:
    """Stable 32-bit seed from a volume name, so a volume always gets the same mask."""
    return zlib.crc32(name.encode("utf-8"))


def acceleration_of(mask: torch.Tensor) -> float:
    """Realised acceleration = sampled locations in the full grid / locations sampled."""
    return float(mask.numel() / mask.sum().clamp_min(1))


def center_width(mask: torch.Tensor) -> int:
    """Width of the contiguous fully sampled block of columns around the k-space centre (index W//2)."""
    cols = mask.reshape(-1, mask.shape[-1]).amin(dim=0) > 0 if mask.dim() > 1 else mask > 0
    c = cols.shape[-1] // 2
    if not bool(cols[c]):
        return 0
    lo, hi = c, c
    while lo > 0 and bool(cols[lo - 1]):
        lo -= 1
    while hi < cols.shape[-1] - 1 and bool(cols[hi + 1]):
        hi += 1
    return hi - lo + 1


def _center_lines(num_cols: int, num_low: int) -> np.ndarray:
    mask = np.zeros(num_cols, dtype=bool)
    pad = (num_cols - num_low + 1) // 2  # fastMRI's placement, also for odd differences
    mask[pad : pad + num_low] = True
    return mask


class _LineMask:
    """Shared parameters of 1-D masks: one (center_fraction, acceleration) pair drawn per call."""

    def __init__(self, center_fractions: Sequence[float], accelerations: Sequence[float]):
        self.center_fractions = tuple(float(c) for c in center_fractions)
        self.accelerations = tuple(float(a) for a in accelerations)
        if len(self.center_fractions) != len(self.accelerations) or not self.accelerations:
            raise ValueError(
                "center_fractions and accelerations must be non-empty and of equal length, got "
                f"{self.center_fractions} and {self.accelerations}"
            )
        for cf, acc in zip(self.center_fractions, self.accelerations):
            if acc < 1 or not 0 < cf <= 1 or cf * acc > 1 + 1e-9:
                raise ValueError(
                    f"acceleration {acc} with center_fraction {cf} is impossible: need "
                    "acceleration >= 1, 0 < center_fraction <= 1/acceleration"
                )

    def __call__(self, shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """K-space shape (..., H, W), seed -> mask (1, W) float32 (1 = sampled)."""
        rng = np.random.default_rng(seed)
        choice = int(rng.integers(len(self.accelerations)))
        num_cols = int(shape[-1])
        num_low = round(num_cols * self.center_fractions[choice])
        lines = _center_lines(num_cols, num_low)
        lines |= self._outer_lines(num_cols, num_low, self.accelerations[choice], rng)
        return torch.from_numpy(lines.astype(np.float32)).reshape(1, num_cols)

    def _outer_lines(self, num_cols: int, num_low: int, acc: float, rng) -> np.ndarray:
        raise NotImplementedError


class RandomMask(_LineMask):
    """Centre block + outer lines drawn independently, as fastMRI's RandomMaskFunc.

    Each outer line is kept with probability (W / R - N_low) / (W - N_low), so the expected
    acceleration equals R.
    """

    def _outer_lines(self, num_cols, num_low, acc, rng):
        prob = (num_cols / acc - num_low) / (num_cols - num_low) if num_cols > num_low else 0.0
        return rng.uniform(size=num_cols) < prob


class EquispacedMask(_LineMask):
    """Centre block + equally spaced lines, as fastMRI's EquispacedMaskFractionFunc.

    The spacing is adjusted for the centre block so the realised acceleration is close to R;
    the offset of the first line is random (seeded).
    """

    def _outer_lines(self, num_cols, num_low, acc, rng):
        lines = np.zeros(num_cols, dtype=bool)
        if acc == 1 or num_low * acc >= num_cols:
            lines[:] = acc == 1
            return lines
        spacing = acc * (num_low - num_cols) / (num_low * acc - num_cols)
        offset = int(rng.integers(0, max(round(spacing), 1)))
        idx = np.around(np.arange(offset, num_cols - 1, spacing)).astype(int)
        lines[idx] = True
        return lines


class PoissonDiscMask:
    """Variable-density 2-D Poisson-disc mask (H, W) with a fully sampled centre square.

    The minimum distance between samples grows linearly with the distance from the centre
    (`density_power` shapes it); the radius scale is bisected to reach the acceleration.
    """

    def __init__(
        self,
        acceleration: float,
        center_fraction: float = 0.08,
        density_power: float = 1.0,
        tolerance: float = 0.05,
    ):
        if acceleration < 1 or not 0 <= center_fraction < 1:
            raise ValueError(
                f"need acceleration >= 1 and 0 <= center_fraction < 1, got {acceleration}, "
                f"{center_fraction}"
            )
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.density_power = float(density_power)
        self.tolerance = float(tolerance)

    def __call__(self, shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """K-space shape (..., H, W), seed -> mask (H, W) float32 (1 = sampled)."""
        h, w = int(shape[-2]), int(shape[-1])
        calib = np.zeros((h, w), dtype=bool)
        ch, cw = round(h * self.center_fraction), round(w * self.center_fraction)
        calib[
            (h - ch + 1) // 2 : (h - ch + 1) // 2 + ch, (w - cw + 1) // 2 : (w - cw + 1) // 2 + cw
        ] = True
        if self.acceleration == 1:
            return torch.ones(h, w)
        target = h * w / self.acceleration
        order = np.random.default_rng(seed).permutation(h * w)
        lo, hi = 0.0, 2.0 * max(h, w)
        best = None
        for _ in range(20):
            scale = 0.5 * (lo + hi)
            mask = self._dart_throw(h, w, scale, order) | calib
            if best is None or abs(mask.sum() - target) < abs(best.sum() - target):
                best = mask
            if abs(mask.sum() - target) <= self.tolerance * target:
                break
            if mask.sum() > target:
                lo = scale
            else:
                hi = scale
        return torch.from_numpy(best.astype(np.float32))

    def _dart_throw(self, h: int, w: int, scale: float, order: np.ndarray) -> np.ndarray:
        yy, xx = np.divmod(order, w)
        ky = (yy - h // 2) / (h / 2)
        kx = (xx - w // 2) / (w / 2)
        dist = np.sqrt(kx**2 + ky**2) / np.sqrt(2)
        radius = np.maximum(scale * dist**self.density_power, 0.5)  # grid units
        taken = np.zeros((h, w), dtype=bool)
        for y, x, r in zip(yy.tolist(), xx.tolist(), radius.tolist()):
            ri = int(r)
            if ri >= 1:
                y0, y1, x0, x1 = (
                    max(y - ri, 0),
                    min(y + ri + 1, h),
                    max(x - ri, 0),
                    min(x + ri + 1, w),
                )
                if taken[y0:y1, x0:x1].any():
                    win = np.argwhere(taken[y0:y1, x0:x1])
                    if (((win[:, 0] + y0 - y) ** 2 + (win[:, 1] + x0 - x) ** 2) < r * r).any():
                        continue
            taken[y, x] = True
        return taken
