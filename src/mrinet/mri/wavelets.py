"""Orthogonal 2-D discrete wavelet transform (periodized) for the l1-wavelet prior, in torch.

Periodized orthogonal wavelets make the transform W unitary, so the l1 proximal step is
exactly W^H soft(W x). Stride-2 convolutions with the four separable 2-D filters do one level;
the inverse is a stride-1 polyphase convolution followed by a pixel shuffle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def wavelet_filters(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction (low, high) filters of an orthogonal wavelet, float64 (L,)."""
    if name not in _REC_LO:
        raise ValueError(f"unknown wavelet {name!r}; choose one of {sorted(_REC_LO)}")
    lo = torch.tensor(_REC_LO[name], dtype=torch.float64)
    n = torch.arange(lo.numel())
    hi = lo.flip(0) * (-1.0) ** n
    return lo, hi


class Wavelet2d:
    """Unitary multi-level 2-D DWT on complex images (B, H, W), periodic borders.

    `levels=None` takes as many levels as the filter allows (as PyWavelets' dwt_max_level).
    Sizes that are not multiples of 2**levels are zero-padded at the end and cropped back.
    """

    def __init__(self, shape: tuple[int, int], wavelet: str = "db4", levels: int | None = None):
        lo, hi = wavelet_filters(wavelet)
        self.filter_length = lo.numel()
        self.shape = (int(shape[0]), int(shape[1]))
        if levels is None:
            levels = max(int(math.log2(min(self.shape) / (self.filter_length - 1))), 1)
        self.levels = int(levels)
        m = 2**self.levels
        self.padded = (math.ceil(self.shape[0] / m) * m, math.ceil(self.shape[1] / m) * m)
        bank = torch.stack(
            [torch.outer(a, b) for a in (lo, hi) for b in (lo, hi)]
        )  # LL, LH, HL, HH: (4, L, L)
        self._bank64 = bank[:, None]
        self._synth64 = _synthesis_bank(lo, hi)
        self._bank: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _pads(self) -> tuple[int, int]:
        # symmetric circular padding L/2 - 1 samples the same phase as PyWavelets'
        # periodization mode: the coefficients equal theirs exactly
        half = self.filter_length // 2 - 1
        return half, half

    def _filters(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.dtype, like.device)
        if key not in self._bank:
            self._bank[key] = (
                self._bank64.to(dtype=like.dtype, device=like.device),
                self._synth64.to(dtype=like.dtype, device=like.device),
            )
        return self._bank[key]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Complex (B, H, W) -> coefficients: [details (B, 3, h_l, w_l) per level..., approx]."""
        b = image.shape[0]
        x = torch.view_as_real(image).permute(0, 3, 1, 2).reshape(2 * b, 1, *image.shape[-2:])
        if self.padded != self.shape:
            x = F.pad(x, (0, self.padded[1] - self.shape[1], 0, self.padded[0] - self.shape[0]))
        bank, (left, right) = self._filters(x)[0], self._pads()
        coeffs = []
        for _ in range(self.levels):
            if left + right:
                x = F.pad(x, (left, right, left, right), mode="circular")
            y = F.conv2d(x, bank, stride=2)  # (2B, 4, h/2, w/2)
            coeffs.append(_to_complex(y[:, 1:], b))
            x = y[:, :1]
        coeffs.append(_to_complex(x, b))
        return coeffs

    def inverse(self, coeffs: list[torch.Tensor]) -> torch.Tensor:
        """Coefficients from `forward` -> complex image (B, H, W); the adjoint and the inverse."""
        b = coeffs[-1].shape[0]
        x = _to_real(coeffs[-1])
        synth = self._filters(x)[1]
        half = synth.shape[-1] // 2
        for details in reversed(coeffs[:-1]):
            y = torch.cat([x, _to_real(details)], dim=1)  # (2B, 4, h, w)
            if half:
                y = F.pad(y, (half, half, half, half), mode="circular")
            # polyphase synthesis: one stride-1 conv gives the 2 x 2 output phases, then
            # interleave them (much faster on CPU than a strided transposed convolution)
            x = F.pixel_shuffle(F.conv2d(y, synth), 2)
        x = x[..., : self.shape[0], : self.shape[1]]
        return torch.view_as_complex(
            x.reshape(b, 2, *x.shape[-2:]).permute(0, 2, 3, 1).contiguous()
        )


def _synthesis_bank(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Polyphase kernels (4 phases, 4 subbands, 2K+1, 2K+1) of the inverse periodized DWT.

    Output sample 2q + r = sum_i g_r[i] c[q + i] with g_r[i] = w[r + P - 2i], P = L/2 - 1 the
    analysis padding; the 2-D kernels are outer products per (row phase, column phase).
    """
    length = lo.numel()
    p, k = length // 2 - 1, length // 4
    poly = torch.zeros(2, 2, 2 * k + 1, dtype=lo.dtype)  # (filter lo/hi, phase r, tap i + K)
    for f, w in enumerate((lo, hi)):
        for r in range(2):
            for i in range(-k, k + 1):
                idx = r + p - 2 * i
                if 0 <= idx < length:
                    poly[f, r, i + k] = w[idx]
    bank = torch.zeros(4, 4, 2 * k + 1, 2 * k + 1, dtype=lo.dtype)
    for ry in range(2):
        for rx in range(2):
            for fy in range(2):
                for fx in range(2):
                    bank[2 * ry + rx, 2 * fy + fx] = torch.outer(poly[fy, ry], poly[fx, rx])
    return bank


def _to_complex(x: torch.Tensor, b: int) -> torch.Tensor:
    """Real (2B, k, h, w) holding (real, imag) pairs -> complex (B, k, h, w)."""
    x = x.reshape(b, 2, *x.shape[1:]).movedim(1, -1).contiguous()
    return torch.view_as_complex(x)


def _to_real(z: torch.Tensor) -> torch.Tensor:
    """Complex (B, k, h, w) -> real (2B, k, h, w) holding (real, imag) pairs."""
    return torch.view_as_real(z).movedim(-1, 1).reshape(-1, *z.shape[1:])


def soft_threshold(z: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding: shrink |z| by `threshold`, keep the phase (prox of l1)."""
    mag = z.abs()
    return z * torch.clamp(1 - threshold / mag.clamp_min(1e-30), min=0)
