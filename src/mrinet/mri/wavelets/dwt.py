"""The periodized orthogonal 2-D DWT written out plainly: the reference the fast shrinks are
tested against, and the adjoint/inverse of the transform.

One level along one axis of length n is an orthogonal n x n matrix: its first n/2 rows take
the low-pass coefficients c[k] = sum_m x[m] g[m - 2k] (g the reconstruction filter shifted by
the periodization phase, mrinet.mri.wavelets.filters), the last n/2 the high-pass ones. A 2-D
level is A_rows @ x @ A_cols^T; its inverse and adjoint is A_rows^T @ y @ A_cols. Slow (dense
matrices) and obviously right: PI-CS uses `Wavelet2d.shrink` (haar_shrink, fft_shrink).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from mrinet.mri.wavelets.filters import periodization_offset, wavelet_filters


@lru_cache(maxsize=32)
def analysis_matrix(wavelet: str, n: int) -> torch.Tensor:
    """One periodized analysis level along an axis of even length n: (n, n) float64, orthogonal;
    rows [0, n/2) low-pass, [n/2, n) high-pass."""
    if n % 2:
        raise ValueError(f"a periodized DWT level needs an even length, got {n}")
    lo, hi = wavelet_filters(wavelet)
    offset = periodization_offset(lo.numel())
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for band, rec in enumerate((lo, hi)):
        for k in range(n // 2):
            for j, value in enumerate(rec.tolist()):
                matrix[band * (n // 2) + k, (2 * k + j - offset) % n] += value
    return matrix


def _matrices(wavelet: str, h: int, w: int, like: torch.Tensor):
    cast = {"dtype": like.dtype, "device": like.device}
    return analysis_matrix(wavelet, h).to(**cast), analysis_matrix(wavelet, w).to(**cast)


def dwt2(image: torch.Tensor, wavelet: str, levels: int) -> list[torch.Tensor]:
    """(B, H, W), H and W multiples of 2**levels -> [details (B, 3, h_l, w_l) per level, finest
    first..., approximation (B, 1, h, w)]; details ordered LH, HL, HH along (rows, columns)."""
    x, coeffs = image, []
    for _ in range(levels):
        h, w = x.shape[-2:]
        rows, cols = _matrices(wavelet, h, w, x)
        y = rows @ x @ cols.T  # blocks [[LL, LH], [HL, HH]]
        h2, w2 = h // 2, w // 2
        coeffs.append(torch.stack([y[:, :h2, w2:], y[:, h2:, :w2], y[:, h2:, w2:]], dim=1))
        x = y[:, :h2, :w2]
    coeffs.append(x[:, None])
    return coeffs


def idwt2(coeffs: list[torch.Tensor], wavelet: str) -> torch.Tensor:
    """Coefficients of `dwt2` -> image (B, H, W): the inverse and the adjoint."""
    x = coeffs[-1][:, 0]
    for details in reversed(coeffs[:-1]):
        top = torch.cat([x, details[:, 0]], dim=-1)
        bottom = torch.cat([details[:, 1], details[:, 2]], dim=-1)
        y = torch.cat([top, bottom], dim=-2)
        rows, cols = _matrices(wavelet, *y.shape[-2:], y)
        x = rows.T @ y @ cols
    return x


def soft_threshold(z: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding: shrink |z| by `threshold`, keep the phase (prox of l1)."""
    mag = z.abs()
    return z * torch.clamp(1 - threshold / mag.clamp_min(1e-30), min=0)
