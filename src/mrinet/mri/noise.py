"""Receiver noise: estimate it from k-space, and add more of it (noise-matched references).

Thermal noise in MRI is complex white Gaussian per coil and k-space sample. The signal of an
image falls off quickly away from the k-space centre, so the outer corners of fully sampled
k-space hold (almost) nothing but noise. A median of |k| there is robust to what signal is left:
|k| of complex noise with std `sigma` per real/imaginary part is Rayleigh with median
sigma * sqrt(2 ln 2).
"""

from __future__ import annotations

import math

import torch

_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))


def estimate_noise_std(kspace: torch.Tensor, corner: float = 0.125) -> torch.Tensor:
    """Noise std per real/imaginary part, per coil (C,), from centred k-space (S, C, H, W).

    Uses the four corners of `corner` x `corner` of the matrix (k-space far from the centre
    along both axes), pooled over slices. Needs fully sampled corners: pass k-space before
    undersampling. Signal left in the corners biases it up (by ~30% for a binary phantom
    with sharp edges on a 64 x 64 grid; <1% for the smooth brain phantom at 320 x 320).
    """
    if kspace.dim() != 4 or not kspace.is_complex():
        raise ValueError(f"kspace must be complex (S, C, H, W), got {tuple(kspace.shape)}")
    h, w = kspace.shape[-2:]
    ch, cw = max(int(corner * h), 1), max(int(corner * w), 1)
    corners = torch.cat(
        [
            kspace[..., :ch, :cw],
            kspace[..., :ch, w - cw :],
            kspace[..., h - ch :, :cw],
            kspace[..., h - ch :, w - cw :],
        ],
        dim=-1,
    )
    magnitude = corners.abs().transpose(0, 1).reshape(kspace.shape[1], -1)
    return magnitude.median(dim=1).values / _RAYLEIGH_MEDIAN


def matched_noise_std(noise_std: torch.Tensor, acceleration: float) -> torch.Tensor:
    """Std of the noise to ADD to fully sampled k-space so its image noise matches rate R.

    An unaliased reconstruction from 1/R of the samples has sqrt(R) * g times the noise std of
    the fully sampled one (SNR_R = SNR_1 / (g sqrt(R)); g >= 1 is the coil geometry factor).
    Fully sampled data with noise std sigma * sqrt(R) per sample match the sqrt(R) part: add
    sigma * sqrt(R - 1). The spatially varying g and what a regulariser removes stay as the
    accelerated reconstruction's own artifacts.
    """
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    return noise_std * math.sqrt(acceleration - 1.0)


def add_complex_noise(
    kspace: torch.Tensor, noise_std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """kspace (S, C, H, W) + complex white noise with std `noise_std` (C,) per part and coil."""
    std = torch.as_tensor(noise_std, dtype=kspace.real.dtype).reshape(1, -1, 1, 1)
    parts = torch.randn(
        (2, *kspace.shape), generator=generator, dtype=kspace.real.dtype, device="cpu"
    ).to(kspace.device)
    return kspace + torch.complex(parts[0], parts[1]) * std.to(kspace.device)
