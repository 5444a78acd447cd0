"""`Wavelet2d`: the unitary multi-level 2-D DWT on complex images, and its l1 shrink."""

from __future__ import annotations

import math

import torch

from mrinet.mri.wavelets.dwt import dwt2, idwt2
from mrinet.mri.wavelets.fft_shrink import FourierShrink
from mrinet.mri.wavelets.filters import default_levels, wavelet_filters
from mrinet.mri.wavelets.haar_shrink import HaarShrink


class Wavelet2d:
    """Unitary multi-level 2-D DWT on complex images (B, H, W), periodic borders.

    `levels=None` takes as many levels as the filter allows (as PyWavelets' dwt_max_level),
    fewer (down to 3) where that avoids padding. Sizes that are not multiples of 2**levels are
    zero-padded at the end and cropped back. Periodized orthogonal wavelets make W unitary, so
    the l1 proximal step is exactly W^H soft(W x): `shrink` (the step PI-CS repeats) runs it
    fused, for Haar on strided views (haar_shrink), for longer filters in the Fourier domain
    (fft_shrink); `forward`/`inverse` are the plain reference transform (dwt).
    """

    def __init__(self, shape: tuple[int, int], wavelet: str = "haar", levels: int | None = None):
        self.wavelet = wavelet
        self.filter_length = wavelet_filters(wavelet)[0].numel()
        self.shape = (int(shape[0]), int(shape[1]))
        if levels is None:
            levels = default_levels(self.shape, self.filter_length)
        self.levels = int(levels)
        m = 2**self.levels
        self.padded = (math.ceil(self.shape[0] / m) * m, math.ceil(self.shape[1] / m) * m)
        if wavelet == "haar":
            self._shrink = HaarShrink(self.shape, self.padded, self.levels)
        else:
            self._shrink = FourierShrink(self.shape, self.padded, self.levels, wavelet)

    def shrink(self, image: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        """W^H soft(W image, threshold): the prox of threshold * ||W x||_1, (B, H, W).

        `threshold` is a scalar or (B, 1) per slice; all subbands (approximation included) are
        shrunk, as in sigpy's L1WaveletRecon. A real image gives a real result (W is real).
        """
        if not image.is_complex():
            return self._shrink(image.to(_complex_of(image.dtype)), threshold).real
        return self._shrink(image, threshold)

    def shrink_fft_shapes(self, batch: int) -> list[tuple[str, tuple[int, ...]]]:
        """The FFTs one `shrink` of `batch` images runs, (torch.fft function, input shape):
        none for Haar; the Fourier-domain shrink's otherwise (the FFT floor of the prior)."""
        return self._shrink.fft_shapes(batch) if isinstance(self._shrink, FourierShrink) else []

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, H, W) -> coefficients: [details (B, 3, h_l, w_l) per level..., approx]."""
        padded = image.new_zeros(image.shape[0], *self.padded)
        padded[:, : self.shape[0], : self.shape[1]] = image
        return dwt2(padded, self.wavelet, self.levels)

    def inverse(self, coeffs: list[torch.Tensor]) -> torch.Tensor:
        """Coefficients from `forward` -> image (B, H, W); the adjoint and the inverse."""
        return idwt2(coeffs, self.wavelet)[:, : self.shape[0], : self.shape[1]]


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
