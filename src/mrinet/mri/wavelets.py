"""Orthogonal 2-D discrete wavelet transform (periodized) for the l1-wavelet prior, in torch.

Periodized orthogonal wavelets make the transform W unitary, so the l1 proximal step is
exactly W^H soft(W x). Stride-2 convolutions with the four separable 2-D filters do one level;
the inverse is the transposed convolution with the wrapped borders folded back.
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
        self._bank: dict[tuple, torch.Tensor] = {}

    def _pads(self) -> tuple[int, int]:
        # symmetric circular padding L/2 - 1 samples the same phase as PyWavelets'
        # periodization mode: the coefficients equal theirs exactly
        half = self.filter_length // 2 - 1
        return half, half

    def _filters(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        if key not in self._bank:
            self._bank[key] = self._bank64.to(dtype=like.dtype, device=like.device)
        return self._bank[key]

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Complex (B, H, W) -> coefficients: [details (B, 3, h_l, w_l) per level..., approx]."""
        b = image.shape[0]
        x = torch.view_as_real(image).permute(0, 3, 1, 2).reshape(2 * b, 1, *image.shape[-2:])
        if self.padded != self.shape:
            x = F.pad(x, (0, self.padded[1] - self.shape[1], 0, self.padded[0] - self.shape[0]))
        bank, (left, right) = self._filters(x), self._pads()
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
        bank, (left, right) = self._filters(x), self._pads()
        for details in reversed(coeffs[:-1]):
            y = torch.cat([x, _to_real(details)], dim=1)
            h, w = 2 * y.shape[-2], 2 * y.shape[-1]
            x = F.conv_transpose2d(y, bank, stride=2)  # (2B, 1, h + L - 2, w + L - 2)
            if left + right:  # adjoint of circular padding: fold both overhangs back
                x = _fold(_fold(x, h, left, right, -2), w, left, right, -1)
        x = x[..., : self.shape[0], : self.shape[1]]
        return torch.view_as_complex(
            x.reshape(b, 2, *x.shape[-2:]).permute(0, 2, 3, 1).contiguous()
        )


def _fold(y: torch.Tensor, n: int, left: int, right: int, dim: int) -> torch.Tensor:
    """Adjoint of circular padding by (left, right) along `dim`: length n + left + right -> n."""
    core = y.narrow(dim, left, n).clone()
    if right:
        core.narrow(dim, 0, right).add_(y.narrow(dim, left + n, right))
    if left:
        core.narrow(dim, n - left, left).add_(y.narrow(dim, 0, left))
    return core


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
