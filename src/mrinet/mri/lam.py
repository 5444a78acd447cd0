"""Automatic PI-CS regularisation weight: k-space cross-validation over held-out samples.

Rule (k-space cross-validation: Ward 2009, IEEE TIT 55(12); the sample split of SSDU, Yaman
et al. 2020, MRM 84(6)): hold out `HOLDOUT_FRACTION` of the samples of the sampled phase-encode
lines OUTSIDE the fully sampled calibration block (uniformly drawn, fixed seed: every line keeps
most of its samples, so the training mask keeps the line pattern), reconstruct from the rest
with exactly the solver being tuned (same iterations, wavelet, data scaling; cold start), and
score each lam by the squared error of the predicted k-space on the held-out samples. Its
expectation is the reconstruction error at those (outer) frequencies plus a constant noise
term, so its minimiser tracks the image-MSE optimum (image error = k-space error, Parseval).
The search walks a factor-2 log grid downhill from `START_LAM` until the score rises (3-6
solves) and refines the minimum by a parabola in log lam. One lam per volume: chosen on the
`AUTO_SLICES` slice(s) of most signal, used for every slice.

Why not a warm-started path or the discrepancy principle: measured on DIPY's T1 and b0 slices,
sigpy's Shepp-Logan and the project phantom (docs/benchmarks.md), a warm-started lam path
scores a different estimator than the 50-iteration cold solve it tunes (-3 dB mean), the
discrepancy principle missed by -0.3 to -11 dB, and holding out whole lines biased lam up by
2-3x on equispaced masks (-1.8 dB worst); 20 / 30 / 40 % held out: 40 % closest.

Cost: 3-6 fixed-lam solves per VOLUME (on one slice, with a 2-D training mask: it cannot use
the row-wise coil compression, only the coarser one-mixing-per-slice one of `SenseOperator`,
3-7 of 8 coils kept; ~1.5-2x a row-compressed solve each) plus the solves themselves; wall
time auto / fixed in docs/benchmarks.md ("Automatic lambda": one slice and a 10-slice volume).

When it fails, and the fallback: fewer than `MIN_HOLDOUT_LINES` sampled lines outside the
calibration block (R = 1, a centre-only mask), a 2-D mask, or no slice with signal: lam is the
universal threshold sigma * sqrt(2 ln N) (Donoho & Johnstone 1994; N = pixels, sigma = the
noise std of the scaled coil-combined image, estimated from the k-space corners of the sampled
lines), with a warning naming the file and slices. That is an l1 DENOISING rule: right for
R = 1, too weak where aliasing, not noise, dominates. Measured misses of the rule itself: up to
-0.4 dB on the benchmark (-0.5 dB on a real T1 slice with a random mask, high noise), where the
training samples (fewer than the full solve has) ask for up to ~2x more regularisation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mrinet.mri.fft import fft2c

LAM_MIN = 5e-4  # bottom of the grid, on data scaled so the 99th percentile of |A^H y| is 1
LAM_MAX = 0.6
GRID_FACTOR = 2.0
START_LAM = 0.008  # first grid point evaluated (middle of the optima measured)
HOLDOUT_FRACTION = 0.4  # 0.1 / 0.2 / 0.3 / 0.4 measured: more held out, closer (docs)
HOLDOUT_SEED = 0
MIN_HOLDOUT_LINES = 2
AUTO_SLICES = 1
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))

Solve = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass
class LamChoice:
    """The lam chosen for one volume, the rule that chose it, and the evidence."""

    lam: float
    rule: str  # "cross-validation" or "fallback: universal threshold (<why>)"
    slices: list[int] = field(default_factory=list)  # slices the choice was made on
    grid: list[float] = field(default_factory=list)  # lams scored (ascending)
    scores: list[float] = field(default_factory=list)  # held-out squared error per lam


def holdout_split(mask: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """1-D mask (W,) -> (training, held-out) masks (rows, W): HOLDOUT_FRACTION of the samples
    of the sampled lines outside the calibration block, drawn uniformly (fixed seed), are held
    out; None when fewer than MIN_HOLDOUT_LINES lines lie outside the block."""
    lines = mask.reshape(-1) > 0
    lo, hi = _centre_block(lines)
    outer = lines.clone()
    outer[lo:hi] = False
    if int(outer.sum()) < MIN_HOLDOUT_LINES:
        return None
    generator = torch.Generator().manual_seed(HOLDOUT_SEED)
    draw = torch.rand(rows, lines.numel(), generator=generator) < HOLDOUT_FRACTION
    held = draw.to(mask.device) & outer[None, :]
    return lines[None, :] & ~held, held


def _centre_block(lines: torch.Tensor) -> tuple[int, int]:
    """[lo, hi) of the contiguous sampled lines around the centre W // 2 (empty if unsampled)."""
    c = lines.numel() // 2
    if not bool(lines[c]):
        return c, c
    lo, hi = c, c + 1
    while lo > 0 and bool(lines[lo - 1]):
        lo -= 1
    while hi < lines.numel() and bool(lines[hi]):
        hi += 1
    return lo, hi


def noise_std_scaled(kspace: torch.Tensor, lines: torch.Tensor, corner: float = 0.125) -> float:
    """Noise std per real/imag part of one slice's k-space (C, H, W) with sampled lines (W,):
    median |k| in the k-space corners (outer `corner` of both axes) of the sampled lines,
    Rayleigh-corrected (as `mrinet.mri.noise.estimate_noise_std`); the outer rows of all
    sampled lines when none lies in the corners."""
    h, w = kspace.shape[-2:]
    rows, cols = max(int(corner * h), 1), max(int(corner * w), 1)
    sampled = lines.reshape(-1) > 0
    outer = sampled.clone()
    outer[cols : w - cols] = False
    k = kspace[..., outer if bool(outer.any()) else sampled]
    if k.numel() == 0:
        return 0.0
    edges = torch.cat([k[:, :rows], k[:, h - rows :]], dim=1).abs().flatten()
    return float(edges.median()) / _RAYLEIGH_MEDIAN


def universal_lam(kspace: torch.Tensor, lines: torch.Tensor, scale: float, pixels: int) -> float:
    """Fallback lam: sigma * sqrt(2 ln N) on the scaled data (unit-norm coil maps: the
    coil-combined image has the per-coil k-space noise std)."""
    return noise_std_scaled(kspace, lines) * scale * math.sqrt(2.0 * math.log(max(pixels, 2)))


def lam_grid() -> list[float]:
    """The ascending log grid LAM_MIN, LAM_MIN * GRID_FACTOR, ... <= LAM_MAX."""
    n = math.floor(math.log(LAM_MAX / LAM_MIN) / math.log(GRID_FACTOR) + 1e-9) + 1
    return [LAM_MIN * GRID_FACTOR**i for i in range(n)]


def holdout_error(
    kspace: torch.Tensor,
    lines: torch.Tensor,
    coil_maps: torch.Tensor,
    solve: Solve,
) -> Callable[[float], float] | None:
    """lam -> squared k-space error on the held-out samples of the reconstruction from the rest.

    kspace (1, C, H, W) centred, lines (W,) its 1-D sampling mask, coil_maps (1, C, H, W);
    `solve(kspace, mask, lam)` is the fixed-lam reconstruction (1, H, W) being tuned, on the
    volume's data scaling. None when fewer than MIN_HOLDOUT_LINES lines can be held out.
    """
    split = holdout_split(lines, kspace.shape[-2])
    if split is None:
        return None
    train, held = (m.to(kspace.real.dtype) for m in split)
    y_train = kspace * train
    y_held = kspace * held

    def error(lam: float) -> float:
        x = solve(y_train, train, lam)
        pred = fft2c(coil_maps * x[:, None]).mul_(held)
        return float(torch.view_as_real(pred.sub_(y_held)).square().sum())

    return error


def bracket_search(error: Callable[[float], float], grid: list[float], start: int):
    """Evaluate `error` on the grid from index `start` downhill until it rises (or the grid
    ends): a bracketed minimum for a unimodal curve in 3-6 evaluations. Returns (lams,
    errors) of the evaluated points, ascending in lam."""
    scores: dict[int, float] = {start: error(grid[start])}

    def at(i: int) -> float:
        if i not in scores:
            scores[i] = error(grid[i])
        return scores[i]

    step = -1
    if start == 0 or at(start - 1) >= at(start):
        step = 1  # smaller lam is no better: go up (or confirm the bracket)
    i = start
    while 0 <= i + step < len(grid) and at(i + step) < at(i):
        i += step
    order = sorted(scores)
    return [grid[j] for j in order], [scores[j] for j in order]


def refine_minimum(lams: list[float], scores: list[float]) -> float:
    """Minimiser of a parabola in log lam through the best point and its grid neighbours
    (the best point itself at the ends of the grid)."""
    i = min(range(len(scores)), key=scores.__getitem__)
    if i == 0 or i == len(scores) - 1:
        return lams[i]
    x = [math.log(lams[j]) for j in (i - 1, i, i + 1)]
    y = [scores[j] for j in (i - 1, i, i + 1)]
    denom = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
    a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / denom
    b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / denom
    if a <= 0:
        return lams[i]
    vertex = min(max(-b / (2 * a), min(x[0], x[2])), max(x[0], x[2]))
    return math.exp(vertex)


def choose_lam(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    coil_maps: torch.Tensor,
    solve: Callable[[int, torch.Tensor, torch.Tensor, float], torch.Tensor],
    scale_of: Callable[[int], float],
    source: str | None = None,
    slices: int = AUTO_SLICES,
) -> LamChoice:
    """One lam for a volume (B, C, H, W) centred k-space with `mask` (B or 1, 1, 1, W), by
    cross-validation on its `slices` slices of most signal. `solve(i, kspace, mask, lam)` is
    the fixed-lam reconstruction (1, H, W) of slice i's data; `scale_of(i)` its data scale
    (for the fallback). Falls back (warning naming `source` and the slices) as the module
    docstring states.
    """
    where = source or "k-space"
    if mask.shape[-2] != 1:
        return _fallback(kspace, mask, scale_of, [0], where, "2-D mask: no phase-encode lines")
    energy = torch.view_as_real(kspace).square().flatten(1).sum(1)
    order = [int(i) for i in energy.argsort(descending=True) if float(energy[i]) > 0]
    if not order:
        slices_all = list(range(kspace.shape[0]))
        return _fallback(kspace, mask, scale_of, slices_all, where, "no slice holds any signal")
    chosen = order[:slices]
    errors = []
    for i in chosen:
        lines = (mask if mask.shape[0] == 1 else mask[i : i + 1]).reshape(-1)
        err = holdout_error(
            kspace[i : i + 1],
            lines,
            coil_maps[i : i + 1],
            lambda k, m, lam, i=i: solve(i, k, m, lam),
        )
        if err is None:
            why = f"fewer than {MIN_HOLDOUT_LINES} sampled lines outside the calibration block"
            return _fallback(kspace, mask, scale_of, chosen, where, why + " to hold out")
        errors.append(err)
    grid = lam_grid()
    start = min(range(len(grid)), key=lambda j: abs(math.log(grid[j] / START_LAM)))
    lams, scores = bracket_search(lambda lam: sum(e(lam) for e in errors), grid, start)
    lam = refine_minimum(lams, scores)
    return LamChoice(lam, "cross-validation", chosen, lams, scores)


def _fallback(kspace, mask, scale_of, slices, where, why) -> LamChoice:
    i = slices[0]
    lines = (mask if mask.shape[0] == 1 else mask[i : i + 1]).reshape(-1)
    if mask.shape[-2] != 1:  # 2-D mask: the corners of the fully sampled rows it has
        lines = (mask[0, 0] > 0).any(dim=0)
    lam = universal_lam(kspace[i], lines, scale_of(i), kspace.shape[-2] * kspace.shape[-1])
    warnings.warn(
        f"{where}, slice(s) {slices}: automatic lam by cross-validation impossible ({why}); "
        f"using the fallback rule lam = sigma * sqrt(2 ln N) = {lam:.4g} (noise from the k-space "
        "corners); pass an explicit lam to override",
        stacklevel=3,
    )
    return LamChoice(lam, f"fallback: universal threshold ({why})", list(slices))
