"""Orthogonal wavelet filters, and how many levels a periodized 2-D transform takes."""

from __future__ import annotations

import math

import torch

# Daubechies reconstruction low-pass filters (standard published values; checked against
# PyWavelets in tests). High-pass filters follow by the quadrature-mirror relation.
_REC_LO = {
    "haar": (0.7071067811865476, 0.7071067811865476),
    "db2": (0.48296291314453416, 0.8365163037378079, 0.2241438680420134, -0.12940952255126037),
    "db4": (
        0.2303778133088965,
        0.7148465705529157,
        0.6308807679298589,
        -0.027983769416859854,
        -0.18703481171909309,
        0.030841381835560764,
        0.0328830116668852,
        -0.010597401785069032,
    ),
}
WAVELETS = tuple(_REC_LO)


def wavelet_filters(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction (low, high) filters of an orthogonal wavelet, float64 (L,)."""
    if name not in _REC_LO:
        raise ValueError(f"unknown wavelet {name!r}; choose one of {sorted(_REC_LO)}")
    lo = torch.tensor(_REC_LO[name], dtype=torch.float64)
    n = torch.arange(lo.numel())
    hi = lo.flip(0) * (-1.0) ** n
    return lo, hi


def periodization_offset(filter_length: int) -> int:
    """The phase L/2 - 1 at which a periodized transform equals PyWavelets' periodization mode:
    coefficient k of a level is sum_m x[m] g[m - 2k], g[i] = rec[i + offset] taken mod n."""
    return filter_length // 2 - 1


def default_levels(shape: tuple[int, int], filter_length: int) -> int:
    """As many levels as the filter allows (PyWavelets' dwt_max_level), fewer (down to 3) where
    that avoids padding (320 = 2**6 * 5: Haar takes 6 levels, not 8 on a 512 grid)."""
    levels = max(int(math.log2(min(shape) / (filter_length - 1))), 1)
    while levels > 3 and (shape[0] % 2**levels or shape[1] % 2**levels):
        levels -= 1
    return levels


def filter_spectrum(rec: torch.Tensor, n: int, offset: int) -> torch.Tensor:
    """DFT (n,) of the filter g[m] = rec[m + offset], periodised to length n (complex128)."""
    g = torch.zeros(n, dtype=torch.float64)
    for j, value in enumerate(rec.tolist()):
        g[(j - offset) % n] += value
    return torch.fft.fft(g)
