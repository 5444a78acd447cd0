"""Centred orthonormal 2-D FFTs, root-sum-of-squares and centre crops on complex tensors.

Same conventions as fastMRI (k-space centre at index N // 2, norm="ortho"), but on complex
tensors (..., H, W) instead of real views (..., H, W, 2). Iterative solvers should not call
these inside their loops: see `mrinet.mri.sense.SenseOperator`, which works in an unshifted
frame and applies the shifts once.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Image (..., H, W) complex -> centred k-space (..., H, W), orthonormal (energy preserved)."""
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred k-space (..., H, W) complex -> image (..., H, W), inverse of `fft2c`."""
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def rss(coil_images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root-sum-of-squares coil combination: (B, C, H, W) complex or real -> (B, H, W) real."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=dim))


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the last two dims (..., H, W) to `shape` around the centre, as fastMRI does.

    For odd differences the extra row/column is dropped at the end (start = (H - h) // 2).
    """
    h, w = int(shape[0]), int(shape[1])
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"crop {(h, w)} does not fit in an image of size {tuple(x.shape[-2:])}")
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def center_pad(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two dims to `shape`, the adjoint of `center_crop` (same offsets)."""
    h, w = int(shape[0]), int(shape[1])
    if h < x.shape[-2] or w < x.shape[-1]:
        raise ValueError(f"pad target {(h, w)} is smaller than the input {tuple(x.shape[-2:])}")
    out = x.new_zeros((*x.shape[:-2], h, w))
    top = (h - x.shape[-2]) // 2
    left = (w - x.shape[-1]) // 2
    out[..., top : top + x.shape[-2], left : left + x.shape[-1]] = x
    return out
