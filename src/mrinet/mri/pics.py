"""Parallel-imaging reconstructions: zero-filled, CG-SENSE and PI-CS (l1-wavelet or TV, FISTA).

Data are scaled before solving (as BART `pics -S`): the 99th percentile of |A^H y| becomes 1,
and the result is scaled back, so the reconstruction scales with the data. Even so the best
`lam` moves by 10x between images and noise levels: `lam="auto"` (the default) chooses it per
volume by k-space cross-validation (`mrinet.mri.lam`).
"""

from __future__ import annotations

import torch

from mrinet.errors import DataFormatError
from mrinet.mri.lam import LamChoice, choose_lam
from mrinet.mri.sense import DEFAULT_COIL_TOLERANCE, SenseOperator
from mrinet.mri.solvers import as_real, conjugate_gradient, fista
from mrinet.mri.wavelets import Wavelet2d

DEFAULT_WAVELET = "db4"  # best-lam PSNR equal to sigpy's db4; Haar was ~1 dB lower on real images
# PI-CS's row-wise coil compression bound (`SenseOperator`), looser than CG-SENSE's: on the
# lam study (DIPY T1/b0, 192x192, 8 birdcage coils, R=4, 50 iterations, best and auto lam) it
# moved PSNR by -0.003 ... +0.020 dB against 1e-5, keeping 2-4 virtual coils of 8 (A^H A ~2x
# faster); the l1 prior's own bias is far larger than a 1 % operator error
PICS_COIL_TOLERANCE = 1e-2


def require_finite(kspace: torch.Tensor, where: str | None = None) -> None:
    """Refuse k-space (B, C, H, W) holding NaN or inf: one such sample spreads over the whole
    slice in every iterative reconstruction."""
    bad = ~torch.isfinite(kspace)
    if bool(bad.any()):
        s, c = (int(i) for i in bad.nonzero()[0, :2])
        count = int(bad.sum())
        raise DataFormatError(
            f"k-space holds {count} non-finite value(s) (NaN or inf); first at slice {s}, coil {c}",
            where=where or "k-space",
            fix="repair or drop that slice/coil (e.g. zero the sample and its mask line) "
            "before reconstructing",
        )


def _as_batch_mask(mask: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
    """Mask broadcastable to (B, C, H, W) -> (B or 1, 1, H or 1, W or 1), on kspace's device."""
    mask = torch.as_tensor(mask, device=kspace.device)
    while mask.dim() < 4:
        mask = mask[None]
    if mask.shape[1] != 1:
        mask = mask[:, :1]
    return mask


def data_scale(adjoint_image: torch.Tensor, quantile: float = 0.99) -> torch.Tensor:
    """Per-slice scale (B,) that maps the `quantile` of |A^H y| (B, H, W) to 1."""
    mag = adjoint_image.abs().flatten(1)
    k = max(round(quantile * mag.shape[1]), 1)
    # a mostly empty slice (99th percentile ~0) is scaled by its maximum instead: no overflow;
    # an all-zero slice keeps scale 1 (its reconstruction is 0 whatever the scale)
    peak = mag.amax(dim=1)
    level = torch.maximum(mag.kthvalue(k, dim=1).values, 1e-6 * peak)
    return torch.where(level > 0, 1.0 / level, torch.ones_like(level))


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor, coil_maps: torch.Tensor) -> torch.Tensor:
    """Coil-combined zero-filled image A^H y (B, H, W) from k-space (B, C, H, W)."""
    mask = _as_batch_mask(mask, kspace)
    op = SenseOperator(coil_maps, mask)
    return op.adjoint(op.from_centered(kspace))


def _tv_prox_factory(iterations: int = 10):
    """Prox of lam * isotropic TV by Chambolle's dual projection (images (B, H, W))."""

    def grad(x):
        return torch.stack([torch.roll(x, -1, -2) - x, torch.roll(x, -1, -1) - x], dim=1)

    def div(p):
        return (p[:, 0] - torch.roll(p[:, 0], 1, -2)) + (p[:, 1] - torch.roll(p[:, 1], 1, -1))

    def prox(v: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
        p = torch.zeros(v.shape[0], 2, *v.shape[1:], dtype=v.dtype, device=v.device)
        for _ in range(iterations):  # thresh (B, 1, 1); step 1/8 <= 1 / ||grad||^2
            g = grad(div(p) - v / thresh)
            p = (p + 0.125 * g) / (1 + 0.125 * g.abs().pow(2).sum(1, keepdim=True).sqrt())
        return v - thresh * div(p)

    return prox


def _prox_factory(prior: str, shape: tuple[int, int], wavelet: str, levels: int | None):
    """lam -> prox(v, step) of lam * step * R for the prior R (images (B, H, W))."""
    if prior == "wavelet":
        wav = Wavelet2d(shape, wavelet, levels)

        def make(lam: float):
            def prox(v, step):
                return wav.shrink(v, lam * step.reshape(-1, 1))

            return prox

        return make
    tv = _tv_prox_factory()

    def make_tv(lam: float):
        def prox(v, step):
            return tv(v, lam * step)

        return prox

    return make_tv


def _chunks(n: int, size: int | None):
    size = n if not size else int(size)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _slice_scale(kspace, mask, coil_maps, scale, i: int) -> float:
    """Data scale of slice i, as `pics_reconstruct` applies it."""
    if isinstance(scale, torch.Tensor):
        return float(scale.reshape(-1)[i])
    if not scale:
        return 1.0
    m = mask if mask.shape[0] == 1 else mask[i : i + 1]
    op = SenseOperator(coil_maps[i : i + 1], m, 0.0)
    return float(data_scale(op.adjoint(op.from_centered(kspace[i : i + 1])))[0])


def auto_lam(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    coil_maps: torch.Tensor,
    iterations: int = 30,
    prior: str = "wavelet",
    wavelet: str = DEFAULT_WAVELET,
    levels: int | None = None,
    scale: bool | torch.Tensor = True,
    coil_tolerance: float = PICS_COIL_TOLERANCE,
    source: str | None = None,
) -> LamChoice:
    """The lam `pics_reconstruct(lam="auto")` uses for this volume (B, C, H, W), and why.

    Same arguments as `pics_reconstruct`: cross-validation tunes exactly that solver (same
    iterations, prior, wavelet, data scaling); `source` (a file name) goes into fallback
    warnings. See `mrinet.mri.lam` for the rule, its cost and when it falls back.
    """
    _check_inputs(kspace, coil_maps, prior, source)
    mask = _as_batch_mask(mask, kspace)
    scales: dict[int, float] = {}

    def scale_of(i: int) -> float:
        if i not in scales:
            scales[i] = _slice_scale(kspace, mask, coil_maps, scale, i)
        return scales[i]

    def solve(i: int, k: torch.Tensor, m: torch.Tensor, lam: float) -> torch.Tensor:
        s = torch.tensor([scale_of(i)], device=k.device)
        return pics_reconstruct(
            k,
            m,
            coil_maps[i : i + 1],
            lam,
            iterations,
            prior,
            wavelet,
            levels,
            s,
            coil_tolerance=coil_tolerance,
        )

    return choose_lam(kspace, mask, coil_maps, solve, scale_of, source)


def _check_inputs(kspace, coil_maps, prior, source) -> None:
    if kspace.dim() != 4 or coil_maps.shape != kspace.shape:
        raise ValueError(
            f"kspace and coil_maps must both be (B, C, H, W); got {tuple(kspace.shape)} and "
            f"{tuple(coil_maps.shape)}"
        )
    if prior not in ("wavelet", "tv"):
        raise ValueError(f"prior must be 'wavelet' or 'tv', got {prior!r}")
    require_finite(kspace, source)


def pics_reconstruct(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    coil_maps: torch.Tensor,
    lam: float | str = "auto",
    iterations: int = 30,
    prior: str = "wavelet",
    wavelet: str = DEFAULT_WAVELET,
    levels: int | None = None,
    scale: bool | torch.Tensor = True,
    chunk_size: int | None = None,
    coil_tolerance: float = PICS_COIL_TOLERANCE,
    source: str | None = None,
) -> torch.Tensor:
    """PI-CS: argmin_x 1/2 ||M F S x - y||^2 + lam ||Psi x||_1 by FISTA, per slice (B, H, W).

    kspace (B, C, H, W) complex (centred, fastMRI convention), mask broadcastable to it,
    coil_maps (B, C, H, W). `prior` is "wavelet" (orthogonal `wavelet`, all subbands) or "tv".
    `lam` applies to data scaled by `data_scale`; "auto" chooses one lam for the batch, taken
    as ONE volume, by k-space cross-validation (`auto_lam`, which also says why; `source`
    names the file in its warnings). `scale=False` solves on the data as given; a tensor (B,)
    gives the scales explicitly (e.g. those of the fully sampled data, so a reference and its
    undersampled versions share one scaling). `chunk_size` slices per solve (small on CPU,
    None = all on GPU). `coil_tolerance` bounds the error of the row-wise coil compression of
    A^H A inside the loop, relative to the Lipschitz bound max_pixel sum_c |S_c|^2 (1-D masks
    only, see `SenseOperator`; 0 = exact; default `PICS_COIL_TOLERANCE`). Non-finite k-space
    raises `DataFormatError`.
    """
    _check_inputs(kspace, coil_maps, prior, source)
    if isinstance(lam, str):
        if lam != "auto":
            raise ValueError(f"lam must be a number or 'auto', got {lam!r}")
        lam = auto_lam(
            kspace,
            mask,
            coil_maps,
            iterations,
            prior,
            wavelet,
            levels,
            scale,
            coil_tolerance,
            source,
        ).lam
    lam = float(lam)
    if chunk_size is None and kspace.device.type == "cpu":
        chunk_size = 1  # small temporaries stay in cache: batches of 4 gained only ~10 % (docs)
    mask = _as_batch_mask(mask, kspace)
    out = torch.empty(kspace.shape[0], *kspace.shape[-2:], dtype=kspace.dtype, device=kspace.device)
    prox = _prox_factory(prior, tuple(kspace.shape[-2:]), wavelet, levels)(lam)
    for sl in _chunks(kspace.shape[0], chunk_size):
        m = mask if mask.shape[0] == 1 else mask[sl]
        op = SenseOperator(coil_maps[sl], m, coil_tolerance)
        y = op.from_centered(kspace[sl])
        aty = op.adjoint(y)
        if isinstance(scale, torch.Tensor):
            s = scale.reshape(-1)[sl].to(aty.device)
        else:
            s = data_scale(aty) if scale else torch.ones(aty.shape[0], device=aty.device)
        s = s.reshape(-1, 1, 1).to(aty.real.dtype)
        aty = aty * s
        step = (1.0 / op.lipschitz().clamp_min(1e-12)).reshape(-1, 1, 1)

        def gradient(x, op=op, aty=aty):
            normal = op.normal(x)
            as_real(normal).sub_(as_real(aty))  # the real view: ~1.7x faster than complex
            return normal

        x = fista(gradient, prox, torch.zeros_like(aty), step, iterations)
        out[sl] = x / s
    return out


def sense_reconstruct(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    coil_maps: torch.Tensor,
    iterations: int = 10,
    chunk_size: int | None = None,
    coil_tolerance: float = DEFAULT_COIL_TOLERANCE,
) -> torch.Tensor:
    """CG-SENSE: least squares argmin ||M F S x - y||^2 by conjugate gradients (B, H, W).

    `coil_tolerance` as in `pics_reconstruct`.
    """
    if chunk_size is None and kspace.device.type == "cpu":
        chunk_size = 1
    mask = _as_batch_mask(mask, kspace)
    out = torch.empty(kspace.shape[0], *kspace.shape[-2:], dtype=kspace.dtype, device=kspace.device)
    for sl in _chunks(kspace.shape[0], chunk_size):
        op = SenseOperator(coil_maps[sl], mask if mask.shape[0] == 1 else mask[sl], coil_tolerance)
        aty = op.adjoint(op.from_centered(kspace[sl]))
        out[sl] = conjugate_gradient(op.normal, aty, iterations=iterations)
    return out
