"""MRI physics in torch: FFTs, masks, coil maps, SENSE, PI-CS, tensor fit. Batched, any device."""

from mrinet.mri.fft import center_crop, center_pad, fft2c, ifft2c, rss
from mrinet.mri.pics import pics_reconstruct, sense_reconstruct, zero_filled

__all__ = [
    "center_crop",
    "center_pad",
    "fft2c",
    "ifft2c",
    "pics_reconstruct",
    "rss",
    "sense_reconstruct",
    "zero_filled",
]
