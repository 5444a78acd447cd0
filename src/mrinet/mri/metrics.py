"""Image quality vs a reference, as fastMRI reports it: NMSE, PSNR and SSIM per slice (torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nmse(reference: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """||ref - x||^2 / ||ref||^2 per slice: (B, H, W) real -> (B,)."""
    ref, x = reference.flatten(1).double(), image.flatten(1).double()
    return ((ref - x) ** 2).sum(1) / (ref**2).sum(1).clamp_min(1e-30)


def psnr(
    reference: torch.Tensor, image: torch.Tensor, data_range: float | None = None
) -> torch.Tensor:
    """10 log10(range^2 / MSE) per slice (B,); range defaults to the reference volume's maximum."""
    ref, x = reference.flatten(1).double(), image.flatten(1).double()
    peak = ref.max() if data_range is None else torch.as_tensor(float(data_range), dtype=ref.dtype)
    mse = ((ref - x) ** 2).mean(1).clamp_min(1e-30)
    return 10 * torch.log10(peak**2 / mse)


def ssim(
    reference: torch.Tensor,
    image: torch.Tensor,
    data_range: float | None = None,
    window: int = 7,
) -> torch.Tensor:
    """Structural similarity per slice (B,) with a uniform `window`, sample covariances and the
    borders excluded, as scikit-image's `structural_similarity` (used by fastMRI's evaluate)."""
    ref, x = reference.double()[:, None], image.double()[:, None]
    peak = float(ref.max()) if data_range is None else float(data_range)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    kernel = torch.full((1, 1, window, window), 1.0 / window**2, dtype=ref.dtype, device=ref.device)
    cov_norm = window**2 / (window**2 - 1)

    def mean(t):
        return F.conv2d(t, kernel)

    ux, uy = mean(ref), mean(x)
    vx = cov_norm * (mean(ref * ref) - ux * ux)
    vy = cov_norm * (mean(x * x) - uy * uy)
    vxy = cov_norm * (mean(ref * x) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
