"""Orthogonal 2-D wavelets for the l1-wavelet prior: filters, the plain reference DWT (dwt),
and the fused shrinks PI-CS runs (haar_shrink, fft_shrink), behind `Wavelet2d`."""

from mrinet.mri.wavelets.dwt import soft_threshold
from mrinet.mri.wavelets.filters import WAVELETS, wavelet_filters
from mrinet.mri.wavelets.wavelet2d import Wavelet2d

__all__ = ["WAVELETS", "Wavelet2d", "soft_threshold", "wavelet_filters"]
