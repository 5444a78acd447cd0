"""Coil sensitivity maps from the fully sampled k-space centre (ESPIRiT, batched, torch).

ESPIRiT: the calibration matrix of k-space patches has a low-rank signal subspace; its
projector, taken to image space, is a C x C matrix per pixel whose eigenvector with eigenvalue
~1 is the coil sensitivity there. The projector is a (2k-1)^2 convolution in k-space, so the
per-pixel matrices come from one FFT of C*C small images (no per-kernel images in memory).
"""

from __future__ import annotations

import torch

from mrinet.errors import ConfigError
from mrinet.mri.masks import center_width


def _check_calibration(kspace: torch.Tensor, calib_width: int, mask: torch.Tensor | None) -> None:
    """A calibration window wider than the sampled centre would give all-zero maps: refuse it."""
    w = kspace.shape[-1]
    if mask is not None:
        sampled = center_width(mask)
    else:  # infer the sampled centre from the data: columns that hold no signal are unsampled
        cols = kspace.abs().amax(dim=tuple(range(kspace.dim() - 1))) > 0
        sampled = center_width(cols.float().reshape(1, -1))
    if calib_width > sampled:
        raise ConfigError(
            f"calibration width {calib_width} is wider than the fully sampled k-space centre "
            f"({sampled} of {w} phase-encode lines); ESPIRiT would return all-zero coil maps",
            where="coil map estimation (calib_width)",
            fix=f"use calib_width <= {sampled}, or a larger center_fraction "
            f"(>= {calib_width / w:.3f}) when undersampling",
        )
    if calib_width > kspace.shape[-2]:
        raise ConfigError(
            f"calibration width {calib_width} exceeds the readout size {kspace.shape[-2]}",
            where="coil map estimation (calib_width)",
            fix=f"use calib_width <= {kspace.shape[-2]}",
        )


def _projector_kernel(calib: torch.Tensor, kernel_width: int, threshold: float) -> torch.Tensor:
    """Calibration data (B, C, n, n) -> signal-subspace projector as a (B, C, C, 2k-1, 2k-1) kernel."""
    b, c = calib.shape[:2]
    k = kernel_width
    # patches: (B, P, C*k*k), rows = every k x k window of every coil
    patches = calib.unfold(-2, k, 1).unfold(-2, k, 1)  # (B, C, ny, nx, k, k)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * k * k)
    # right singular vectors from the small Gram matrix (C*k*k square): cheaper than an SVD
    evals, evecs = torch.linalg.eigh(patches.mH @ patches)
    s = evals.flip(-1).clamp_min(0).sqrt()  # singular values, descending (B, n)
    vh = evecs.flip(-1).mH  # rows = right singular vectors^H (B, n, C*k*k)
    keep = (s > threshold * s[:, :1]).to(vh.dtype)  # per-slice rank, batched by masking
    v = vh * keep[..., None]
    proj = torch.einsum("bni,bnj->bij", v, v.conj()).reshape(b, c, k, k, c, k, k)
    # sum the projector along its diagonals: offset d = kernel position - kernel position'
    out = calib.new_zeros(b, c, c, 2 * k - 1, 2 * k - 1)
    for i in range(k):
        for j in range(k):
            out[..., k - 1 - i : 2 * k - 1 - i, k - 1 - j : 2 * k - 1 - j] += proj[
                :, :, :, :, :, i, j
            ].permute(0, 1, 4, 2, 3)
    return out


def _upsample_periodic(x: torch.Tensor, step: int) -> torch.Tensor:
    """Real (N, ch, h, w) on the grid p = step * r -> (N, ch, step*h, step*w), periodic bilinear."""
    x = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="circular")
    h, w = x.shape[-2] - 1, x.shape[-1] - 1
    up = torch.nn.functional.interpolate(
        x, size=(step * h + 1, step * w + 1), mode="bilinear", align_corners=True
    )
    return up[..., :-1, :-1]


def espirit_maps(
    kspace: torch.Tensor,
    calib_width: int = 24,
    kernel_width: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    mask: torch.Tensor | None = None,
    power_iterations: int = 12,
    subsample: int = 1,
) -> torch.Tensor:
    """Centred k-space (B, C, H, W) complex -> coil maps (B, C, H, W), unit norm over coils.

    `calib_width` is the side of the centre square used for calibration; it must not exceed
    the fully sampled centre (given by `mask`, or inferred from zero columns). Pixels whose
    top eigenvalue is below `crop` are set to 0 (outside the object), as in ESPIRiT.
    `subsample` > 1 solves the per-pixel eigenproblems on every `subsample`-th pixel (exact
    there) and interpolates the smooth maps in between: ~subsample^2 times faster.
    """
    if kspace.dim() != 4 or not kspace.is_complex():
        raise ValueError(f"kspace must be complex (B, C, H, W), got {tuple(kspace.shape)}")
    _check_calibration(kspace, calib_width, mask)
    b, c, h, w = kspace.shape
    step = int(subsample)
    if step < 1 or h % step or w % step:
        raise ValueError(f"subsample {subsample} must be >= 1 and divide the image size {(h, w)}")
    k = kernel_width
    top, left = h // 2 - calib_width // 2, w // 2 - calib_width // 2
    calib = kspace[..., top : top + calib_width, left : left + calib_width]
    kern = _projector_kernel(calib, k, threshold) / (k * k)
    # Per-pixel C x C matrices = inverse FFT of the kernel. Offsets at wrapped indices and a
    # phase ramp on the small kernel replace both FFT shifts of the big grid; a grid of
    # (H/step, W/step) samples the same trigonometric polynomial at pixels step * r exactly.
    hs, ws = h // step, w // step
    d = torch.arange(-(k - 1), k, device=kspace.device)
    ramp_y = torch.exp(-2j * torch.pi * d * (h // 2) / h).to(kspace.dtype)
    ramp_x = torch.exp(-2j * torch.pi * d * (w // 2) / w).to(kspace.dtype)
    kern = (kern * ramp_y[:, None] * ramp_x[None, :]).permute(0, 3, 4, 1, 2)
    grid = kspace.new_zeros(b, hs, ws, c, c)
    index = (torch.arange(b, device=d.device)[:, None, None], (d % hs)[:, None], (d % ws)[None, :])
    grid.index_put_(index, kern, accumulate=True)  # accumulate: offsets alias when 2k-1 > H/step
    gmat = torch.fft.ifft2(grid, dim=(1, 2), norm="forward")  # (B, hs, ws, C, C) pixel-major
    vec = kspace.new_ones(b, hs, ws, c, 1)
    for i in range(power_iterations):
        vec = gmat @ vec
        if i % 4 == 3 or i == power_iterations - 1:  # eigenvalues <= ~1: no overflow between
            norm2 = torch.view_as_real(vec).pow(2).sum(dim=(-3, -1), keepdim=True)[..., 0]
            vec = vec * norm2.clamp_min(1e-30).rsqrt()
    eig = (vec.conj() * (gmat @ vec)).sum(dim=(-2, -1)).real  # Rayleigh quotient (B, hs, ws)
    vec = vec[..., 0].permute(0, 3, 1, 2)  # (B, C, hs, ws)
    ref = vec[:, :1]
    vec = vec * (ref.conj() / ref.abs().clamp_min(1e-12))  # phase relative to the first coil
    if step > 1:
        parts = torch.cat([vec.real, vec.imag, eig[:, None]], dim=1)
        parts = _upsample_periodic(parts, step)
        vec = torch.complex(parts[:, :c], parts[:, c : 2 * c])
        vec = vec / torch.linalg.vector_norm(vec, dim=1, keepdim=True).clamp_min(1e-12)
        eig = parts[:, 2 * c]
    return vec * (eig > crop)[:, None]
