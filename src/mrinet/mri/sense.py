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
        self.coil_maps_conj = coil_maps.conj_physical()  # a lazy conj view costs 2x per use
        mask = torch.as_tensor(mask, device=coil_maps.device)
        self.mask = torch.fft.ifftshift(mask.to(coil_maps.real.dtype), dim=_DIMS)
        self.full = bool((mask != 0).all())
        # A mask constant along H (1-D phase-encode lines) commutes with the FFT along H, so
        # F^H M F = F_W^H M F_W: the normal operator needs only 1-D FFTs along W
        self.columns = mask.dim() < 2 or mask.shape[-2] == 1
        self._cmask = self.mask.to(coil_maps.dtype)
        # rows where every coil map is zero (ESPIRiT crops outside the object) are zero in
        # A^H A x: the 1-D normal operator skips them, and runs in blocks of rows that stay in
        # the CPU cache (fresh 8-coil temporaries cost more in page faults than the FFTs)
        block = 32 if coil_maps.device.type == "cpu" else h
        active = (coil_maps != 0).flatten(0, 1).any(dim=0).any(dim=-1).tolist()
        self._row_blocks = _row_blocks(active, block)
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
        if self.columns and not self.full:
            return self._normal_rows(image)
        coil_images = self.coil_maps * image[:, None]
        if self.full:
            return coil_images.mul_(self.coil_maps_conj).sum(dim=1)
        kspace = torch.fft.fft2(coil_images, norm="ortho").mul_(self._cmask)
        coil_images = torch.fft.ifft2(kspace, norm="ortho")
        return coil_images.mul_(self.coil_maps_conj).sum(dim=1)

    def _normal_rows(self, image: torch.Tensor) -> torch.Tensor:
        """A^H A for a mask constant along H: 1-D FFTs along W, block of rows by block."""
        out = torch.zeros_like(image)
        for rows in self._row_blocks:
            coil_images = self.coil_maps[:, :, rows] * image[:, None, rows]
            kspace = torch.fft.fft(coil_images, dim=-1, norm="ortho").mul_(self._cmask)
            coil_images = torch.fft.ifft(kspace, dim=-1, norm="ortho")
            torch.sum(coil_images.mul_(self.coil_maps_conj[:, :, rows]), dim=1, out=out[:, rows])
        return out

    def lipschitz(self) -> torch.Tensor:
        """Upper bound of ||A^H A|| per slice (B,): max over pixels of sum_c |S_c|^2."""
        return self.coil_maps.abs().pow(2).sum(dim=1).flatten(1).amax(dim=1)


def _row_blocks(active: list[bool], block: int) -> list[slice]:
    """Slices of at most `block` rows covering every run of active rows."""
    blocks, start = [], None
    for i, on in enumerate([*active, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            blocks += [slice(j, min(j + block, i)) for j in range(start, i, block)]
            start = None
    return blocks
