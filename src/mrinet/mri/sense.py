"""SENSE forward model A = M F S and its adjoint, for parallel-imaging reconstructions.

`sense_forward` / `sense_adjoint` are the plain centred definitions. `SenseOperator` applies the
same A inside iterative solvers without any FFT shift: k-space is kept unshifted and
demodulated (the shifts become a fixed phase on the data, applied once by `from_centered`).
"""

from __future__ import annotations

import math

import torch

from mrinet.mri.fft import fft2c, ifft2c

_DIMS = (-2, -1)


def sense_forward(image: torch.Tensor, coil_maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Image (B, H, W) -> masked multi-coil k-space (B, C, H, W); centred orthonormal FFT."""
    return mask * fft2c(coil_maps * image[:, None])


def sense_adjoint(
    kspace: torch.Tensor, coil_maps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Multi-coil k-space (B, C, H, W) -> coil-combined image (B, H, W): S^H F^H M."""
    return (coil_maps.conj() * ifft2c(mask * kspace)).sum(dim=1)


def _shift_phase(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """exp(2 pi i k (n//2) / n): FFT of an image rolled by ifftshift, relative to the plain FFT."""
    k = torch.arange(n, device=device, dtype=torch.float64)
    return torch.exp(2j * math.pi * k * (n // 2) / n).to(dtype)


class SenseOperator:
    """A = M F S on images (B, H, W) in an unshifted, demodulated k-space frame (B, C, H, W).

    `from_centered(kspace)` maps centred k-space into this frame (once, outside the loop);
    then `forward`/`adjoint` need only plain FFTs. A is the same linear map as
    `sense_forward` up to this fixed unitary change of k-space coordinates.
    """

    def __init__(self, coil_maps: torch.Tensor, mask: torch.Tensor):
        h, w = coil_maps.shape[-2:]
        self.coil_maps = coil_maps
        self.coil_maps_conj = coil_maps.conj()
        mask = torch.as_tensor(mask, device=coil_maps.device)
        self.mask = torch.fft.ifftshift(mask.to(coil_maps.real.dtype), dim=_DIMS)
        self.full = bool((mask != 0).all())
        # A mask constant along H (1-D phase-encode lines) commutes with the FFT along H, so
        # F^H M F = F_W^H M F_W: the normal operator needs only 1-D FFTs along W
        self.columns = mask.dim() < 2 or mask.shape[-2] == 1
        self._cmask = self.mask.to(coil_maps.dtype)
        self._phase = (
            _shift_phase(h, coil_maps.dtype, coil_maps.device)[:, None]
            * _shift_phase(w, coil_maps.dtype, coil_maps.device)[None, :]
        )

    def from_centered(self, kspace: torch.Tensor) -> torch.Tensor:
        """Centred k-space (B, C, H, W) -> the operator's frame, masked."""
        return self.mask * torch.fft.ifftshift(kspace, dim=_DIMS) * self._phase.conj()

    def to_centered(self, kspace: torch.Tensor) -> torch.Tensor:
        """The operator's frame -> centred k-space (B, C, H, W)."""
        return torch.fft.fftshift(kspace * self._phase, dim=_DIMS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image (B, H, W) -> k-space (B, C, H, W) in the operator's frame."""
        kspace = torch.fft.fft2(self.coil_maps * image[:, None], norm="ortho")
        return kspace if self.full else kspace.mul_(self._cmask)

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """K-space (B, C, H, W) in the operator's frame -> image (B, H, W)."""
        if not self.full:
            kspace = kspace * self._cmask
        coil_images = torch.fft.ifft2(kspace, norm="ortho")
        return (coil_images.mul_(self.coil_maps_conj)).sum(dim=1)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """A^H A image (B, H, W) -> (B, H, W); the mask is idempotent, so it is applied once."""
        coil_images = self.coil_maps * image[:, None]
        if self.full:
            return coil_images.mul_(self.coil_maps_conj).sum(dim=1)
        if self.columns:
            kspace = torch.fft.fft(coil_images, dim=-1, norm="ortho").mul_(self._cmask)
            coil_images = torch.fft.ifft(kspace, dim=-1, norm="ortho")
        else:
            kspace = torch.fft.fft2(coil_images, norm="ortho").mul_(self._cmask)
            coil_images = torch.fft.ifft2(kspace, norm="ortho")
        return coil_images.mul_(self.coil_maps_conj).sum(dim=1)

    def lipschitz(self) -> torch.Tensor:
        """Upper bound of ||A^H A|| per slice (B,): max over pixels of sum_c |S_c|^2."""
        return self.coil_maps.abs().pow(2).sum(dim=1).flatten(1).amax(dim=1)
