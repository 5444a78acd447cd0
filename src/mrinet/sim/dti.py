"""DWI synthesis on the digital brain phantom: S = S0 exp(-b g^T D g), partial volume, Rician noise.

Each tissue has its own diffusion tensor field (eigenvalue distributions with smooth + voxel
variability, cylindrically symmetric: lambda1 = AD, lambda2 = lambda3 = RD) and orientation field
(corpus callosum left-right with a small angular spread, other tissues smoothly varying). A voxel's
signal is the fraction-weighted sum of its tissues' SIGNALS (partial volume mixes signals, never
features), then Rician noise is added. T1w mixes per-tissue intensities the same way, times a
smooth bias field, plus noise. Parameters come from YAML presets (`presets/*.yaml`).
"""

from __future__ import annotations

import copy
from importlib import resources

import numpy as np

from mrinet.errors import ConfigError, check_choice
from mrinet.sim.anatomy.atlas import (
    MNI_TISSUES,
    auto_shape,
    check_voxel_mm,
    load_atlas,
    load_wmparc,
    resolve_anatomy,
)
from mrinet.sim.anatomy.blas import single_threaded_blas
from mrinet.sim.anatomy.fibres import fibre_orientations
from mrinet.sim.anatomy.subject import sample_subject
from mrinet.sim.anatomy.warp import random_pose
from mrinet.sim.cpu_clock import CpuClock, clock_or_none
from mrinet.sim.phantom import TISSUES, make_brain_anatomy, tissue_fractions

PRESETS = ("lecture", "literature")


def load_preset(name: str) -> dict:
    """Simulator parameters of a shipped preset (`lecture` or `literature`) as a nested dict."""
    import yaml

    check_choice(name, PRESETS, "data.synthetic.preset", "DTI simulator preset")
    text = resources.files("mrinet.sim").joinpath(f"presets/{name}.yaml").read_text()
    return yaml.safe_load(text)


def merge_params(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` into a copy of `base` (nested dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_params(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _hemisphere_dirs(n: int, rng: np.random.Generator) -> np.ndarray:
    """n well-spread unit vectors (n, 3) on a half sphere (Fibonacci lattice, random rotation)."""
    i = np.arange(n) + 0.5
    z = 1.0 - i / n  # half sphere: z in (0, 1)
    phi = np.pi * (1.0 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], 1)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return dirs @ q.T


def make_scheme(params: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gradient scheme -> bvals (N,) s/mm^2 and bvecs (N, 3); b0s interleaved as in HCP."""
    kind = params["scheme"]
    if kind == "single_shell":
        cfg = params["single_shell"]
        shells = [(float(cfg["bval"]), _hemisphere_dirs(int(cfg["n_dirs"]), rng))]
        n_b0, b0_value, jitter = int(cfg["n_b0"]), 0.0, 0.0
    elif kind == "hcp":
        cfg = params["hcp"]
        shells = [(float(b), _hemisphere_dirs(int(cfg["n_dirs"]), rng)) for b in cfg["shells"]]
        n_b0, b0_value, jitter = int(cfg["n_b0"]), float(cfg["b0_stored"]), float(cfg["jitter"])
    else:
        raise ValueError(f"scheme must be 'single_shell' or 'hcp', got {kind!r}")
    bvals = np.concatenate([np.full(len(d), b) for b, d in shells])
    bvecs = np.concatenate([d for _, d in shells])
    if jitter > 0:  # HCP stores the shells as measured: 990, 1985, 3010, ...
        bvals = np.round((bvals + rng.uniform(-jitter, jitter, size=bvals.size)) / 5.0) * 5.0
    order = rng.permutation(bvals.size)
    bvals, bvecs = bvals[order], bvecs[order]
    at = np.linspace(0, bvals.size, n_b0, endpoint=False).astype(int)
    bvals = np.insert(bvals, at, b0_value)
    bvecs = np.insert(bvecs, at, np.array([1.0, 0.0, 0.0]) if b0_value > 0 else 0.0, axis=0)
    return bvals, bvecs


def _smooth_field(shape, sigma_vox: float, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """n independent unit-variance Gaussian random fields (n, X, Y, Z), correlated over sigma."""
    from scipy.ndimage import gaussian_filter

    out = np.empty((n, *shape), dtype=np.float32)
    for k in range(n):
        f = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_vox, mode="wrap")
        out[k] = f / max(float(f.std()), 1e-12)
    return out


def _varying(mean_sd, smooth, n_vox, frac_smooth, rng) -> np.ndarray:
    """Per-voxel values: mean + sd (sqrt(rho) smooth + sqrt(1 - rho) white), float64 (V,)."""
    mean, sd = (float(v) for v in mean_sd)
    white = rng.standard_normal(n_vox)
    return mean + sd * (np.sqrt(frac_smooth) * smooth + np.sqrt(1.0 - frac_smooth) * white)


def _add_rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """|signal + sigma (n1 + i n2)| for float32 (V, N); torch's sampler (seeded from rng) is a
    few times faster than numpy's at these sizes."""
    import torch

    gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    s = torch.from_numpy(signal)
    re = torch.randn(s.shape, generator=gen, dtype=torch.float32).mul_(sigma).add_(s)
    im = torch.randn(s.shape, generator=gen, dtype=torch.float32).mul_(sigma)
    return torch.hypot(re, im).numpy()


def grid_shape(params: dict, anatomy: str) -> tuple[int, int, int]:
    """The cohort grid: `grid.shape`, or `auto`: the anatomical phantom's field of view
    (anatomy.atlas.FOV_MM), or the geometric phantom's 144 x 176 x 144 mm, at `grid.voxel_mm`."""
    grid = params["grid"]
    voxel_mm = float(grid["voxel_mm"])
    if anatomy == "mni_aparc":
        check_voxel_mm(voxel_mm)
    shape = grid.get("shape", "auto")
    if shape is None or shape == "auto":
        if anatomy == "mni_aparc":
            return auto_shape(voxel_mm)
        return tuple(2 * int(np.ceil(f / voxel_mm / 2.0)) for f in (144.0, 176.0, 144.0))
    return tuple(int(n) for n in shape)


def simulate_subject(
    params: dict, rng: np.random.Generator, clock: CpuClock | None = None
) -> dict[str, np.ndarray]:
    """One subject: labels (X,Y,Z) int32 (FreeSurfer's view), tissue (X,Y,Z) int32 (what the
    signals come from), dwi (X,Y,Z,N) (dtype `dwi_dtype`), bvals (N,), bvecs (N,3), t1w (X,Y,Z)
    float32, mask (X,Y,Z) bool, and the pure-tissue ground truth ad/rd (um^2/ms). `clock`
    collects CPU seconds per stage (the first-run benchmark)."""
    with single_threaded_blas():
        return _simulate_subject(params, rng, clock_or_none(clock))


def _simulate_subject(params: dict, rng: np.random.Generator, clock) -> dict[str, np.ndarray]:
    phantom = params.get("phantom") or {}
    anatomy = resolve_anatomy(phantom.get("anatomy"))
    wmparc = None
    voxel_mm = float(params["grid"]["voxel_mm"])
    shape = grid_shape(params, anatomy)
    subject = None
    if anatomy == "mni_aparc":
        with clock("atlas (once per process)"):
            atlas = load_atlas()
            if phantom.get("wmparc"):
                load_wmparc()
        with clock("anatomy"):
            deform_mm = float(phantom.get("deform_mm", 2.0))
            pose = random_pose(rng, np.asarray(shape) * voxel_mm, deform_mm)
            subject = sample_subject(atlas, pose, shape, voxel_mm)
            if phantom.get("wmparc"):
                wmparc = subject.resample(load_wmparc()).astype(np.int32)
        tissue, labels = subject.tissue, subject.labels
        tissues = MNI_TISSUES
        missing = [n for n in tissues if n != "background" and n not in params["tissues"]]
        if missing:
            raise ConfigError(
                f"the anatomical phantom needs tissue parameters for {missing}",
                "data.synthetic.preset",
                "data.synthetic.preset=literature, or data.synthetic.phantom.anatomy=geometric",
            )
        bvals, bvecs = make_scheme(params, rng)
        fractions = dict(subject.fractions)
        sigma_pv = float(params["partial_volume_sigma_vox"])
        if sigma_pv > 0:  # the acquisition's point spread on top of the voxel's own average
            from scipy.ndimage import gaussian_filter

            with clock("partial volume"):
                fractions = {
                    n: gaussian_filter(f, sigma=sigma_pv, mode="nearest", truncate=3.0)
                    for n, f in fractions.items()
                }
    else:
        if phantom.get("wmparc"):
            raise ConfigError(
                "phantom.wmparc needs the anatomical phantom (the geometric one has no cortical "
                "parcels)",
                "data.synthetic.phantom.wmparc",
                "data.synthetic.phantom.anatomy=mni_aparc, or data.synthetic.phantom.wmparc=false",
            )
        tissue, labels = make_brain_anatomy(
            shape,
            voxel_mm,
            rng,
            phantom.get("cc_label_half_width_mm"),
            phantom.get("cc_label_slab", "midline"),
        )
        tissues = TISSUES
        bvals, bvecs = make_scheme(params, rng)
        # partial volume mixes tissues, so fractions come from the tissue volume, not the labels
        fractions = tissue_fractions(tissue, float(params["partial_volume_sigma_vox"]))
    head = fractions["background"] < 0.999
    n_head = int(head.sum())
    signal = np.zeros((n_head, bvals.size), dtype=np.float32)
    t1w_head = np.zeros(n_head, dtype=np.float64)
    truth_ad = np.zeros(shape, dtype=np.float32)
    truth_rd = np.zeros(shape, dtype=np.float32)
    with clock("random fields"):
        smooth = _smooth_field(shape, 4.0, rng, n=3)[:, head]
        orient = _smooth_field(shape, float(params["orientation_smooth_vox"]), rng, n=3)[:, head]
    spread = np.tan(np.deg2rad(float(params["cc_orientation_spread_deg"])))
    fibres = None
    if subject is not None:  # orientations the anatomy dictates, in the subject's pose
        with clock("fibres"):
            template = subject.template[:, head]
            fibres = fibre_orientations(atlas, template, subject.pose.linear, orient)
            # the callosum's angular spread, as in the geometric phantom
            cc_dir = fibres["cc"] + spread * np.cross(fibres["cc"].T, orient.T).T
            fibres["cc"] = cc_dir / np.linalg.norm(cc_dir, axis=0, keepdims=True)
    with clock("signal"):
        fields = (smooth, orient, fibres, spread)
        truth = (truth_ad, truth_rd, t1w_head)
        _tissue_signals(params, tissues, fractions, head, fields, bvals, bvecs, signal, truth, rng)
    with clock("noise"):
        dwi = _noisy_dwi(params, signal, head, shape, rng)
    with clock("t1w"):
        t1w = _t1w(params, subject, head, shape, t1w_head, rng)
    extra = {} if wmparc is None else {"wmparc": wmparc}
    return {
        **extra,
        "labels": labels,
        "tissue": tissue,
        "dwi": dwi,
        "bvals": bvals,
        "bvecs": bvecs,
        "t1w": t1w,
        # the head: FreeSurfer leaves sulcal CSF unlabelled, a brain mask does not
        "mask": labels > 0 if subject is None else fractions["background"] < 0.5,
        "true_ad": truth_ad,
        "true_rd": truth_rd,
    }


def _tissue_signals(params, tissues, fractions, head, fields, bvals, bvecs, signal, truth, rng):
    """Add every tissue's fraction-weighted signal into `signal` (V, N) and its pure-voxel
    ground truth into `truth` (ad, rd; and the geometric phantom's T1w of the head voxels)."""
    smooth, orient, fibres, spread = fields
    truth_ad, truth_rd, t1w_head = truth
    geometric = fibres is None  # the anatomical phantom takes the MNI T1 instead
    shape = head.shape
    n_head = signal.shape[0]
    rho = float(params["smooth_fraction"])
    b = bvals / 1000.0  # ms/um^2
    for name in tissues:
        if name == "background":
            continue
        tp = params["tissues"][name]
        frac = fractions[name][head]
        ad = _varying(tp["ad"], smooth[0], n_head, rho, rng)
        rd = _varying(tp["rd"], smooth[1], n_head, rho, rng)
        rd = np.clip(rd, 0.05, None)
        ad = np.maximum(ad, rd)
        t1 = _varying(tp["t1w"], smooth[2], n_head, rho, rng)
        if geometric:
            t1w_head += frac * t1
        sel = frac > 0.999
        pure = np.zeros(shape, dtype=bool)
        pure[head] = sel
        truth_ad[pure], truth_rd[pure] = ad[sel], rd[sel]
        idx = np.flatnonzero(frac > 1e-3)
        if idx.size == 0:
            continue
        if fibres is not None:
            v = fibres.get(name, fibres["default"])[:, idx].T.copy()
        elif name == "cc":  # left-right fibres, small angular spread
            v = np.stack([np.ones(idx.size), spread * orient[1, idx], spread * orient[2, idx]], 1)
        else:
            v = orient[:, idx].T.astype(np.float64)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        # float32 from here: the signal is stored as int16/float32 anyway
        arg = (v.astype(np.float32) @ bvecs.T.astype(np.float32)) ** 2  # cos^2 (V, N)
        arg *= (ad[idx] - rd[idx]).astype(np.float32)[:, None]
        arg += rd[idx].astype(np.float32)[:, None]
        arg *= -b.astype(np.float32)[None, :]
        np.exp(arg, out=arg)
        arg *= (frac[idx] * float(tp["s0"])).astype(np.float32)[:, None]
        signal[idx] += arg


def _noisy_dwi(params, signal, head, shape, rng) -> np.ndarray:
    """The head's signals with Rician noise, stored (X, Y, Z, N) as the preset's dwi_dtype."""
    sigma = float(params["tissues"]["wm"]["s0"]) / float(params["snr"])
    if np.isfinite(sigma) and sigma > 0:
        signal = _add_rician(signal, sigma, rng)
    # stored as the preset says (scanners write int16); 0 outside the head, as if masked
    dtype = np.dtype(params.get("dwi_dtype", "float32"))
    if dtype.kind == "i":
        np.rint(signal, out=signal)
        np.minimum(signal, np.iinfo(dtype).max, out=signal)  # Rician magnitudes are >= 0
    dwi = np.zeros((*shape, signal.shape[1]), dtype=dtype)
    dwi[head] = signal
    return dwi


def _t1w(params, subject, head, shape, t1w_head, rng) -> np.ndarray:
    """T1w magnitude image: tissue (or MNI) T1 times a smooth bias field, Rician noise."""
    if subject is not None:  # the MNI T1 averaged over each voxel, in the preset's WM units
        t1w_head = subject.t1[head].astype(np.float64) * float(params["tissues"]["wm"]["t1w"][0])
    t1p = params["t1w"]
    field = _smooth_field(shape, 12.0, rng)[0]
    field = np.clip(field - field[head].mean(), -2.0, 2.0)  # zero mean over the head
    bias = 1.0 + float(t1p["bias_amplitude"]) * field
    t1w = np.zeros(shape, dtype=np.float64)
    t1w[head] = t1w_head
    noise_sd = float(t1p["noise_sd"])
    re = t1w * bias + noise_sd * rng.standard_normal(shape)
    im = noise_sd * rng.standard_normal(shape)
    return np.sqrt(re * re + im * im).astype(np.float32)


def simulate(
    preset: str = "literature", rng: np.random.Generator | None = None, **params
) -> dict[str, np.ndarray]:
    """`simulate_subject` with a preset's parameters updated by keyword overrides."""
    rng = np.random.default_rng(0) if rng is None else rng
    return simulate_subject(merge_params(load_preset(preset), params), rng)
