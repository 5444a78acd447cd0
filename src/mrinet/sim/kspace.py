"""Multi-coil k-space of brain slices: anatomy -> contrast -> smooth phase -> coil maps -> noise.

Anatomy comes from the digital brain phantom (FreeSurfer labels) or from any magnitude image
volume. Everything takes a `numpy.random.Generator`; no global random state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mrinet.mri.fft import fft2c
from mrinet.sim.anatomy.atlas import check_voxel_mm, load_atlas
from mrinet.sim.anatomy.blas import single_threaded_blas
from mrinet.sim.anatomy.subject import sample_subject
from mrinet.sim.anatomy.warp import random_pose
from mrinet.sim.phantom import TISSUES, make_brain_phantom, tissue_fractions

#: Relative signal per tissue group for T2-weighted (fastMRI AXT2-like) and T1-weighted images.
CONTRASTS: dict[str, dict[str, float]] = {
    "T2w": {
        "background": 0.0,
        "csf": 1.0,
        "cortex": 0.55,
        "wm": 0.38,
        "thalamus": 0.48,
        "cc": 0.33,
    },
    "T1w": {
        "background": 0.0,
        "csf": 0.18,
        "cortex": 0.55,
        "wm": 0.82,
        "thalamus": 0.7,
        "cc": 0.88,
    },
}
#: T2w signal of the anatomical phantom's further tissue groups (mrinet.sim.anatomy): deep grey
#: matter between cortex and thalamus, the iron-rich pallidum darker, brain stem like white
#: matter. Its T1w images come from the MNI152 T1 itself (white matter at CONTRASTS' level).
ANATOMY_T2W = {**CONTRASTS["T2w"], "deep_gm": 0.52, "pallidum": 0.40, "brainstem": 0.40}
#: world z (mm, about MNI z) of the first and last axial slice of an anatomical volume:
#: ventricles, basal ganglia, thalamus, corpus callosum and the cortex above
ANATOMY_SLAB_MM = (-8.0, 48.0)
ANATOMY_FOV_MM = 220.0


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cutoff: int = 4) -> np.ndarray:
    """Zero-mean smooth random field (H, W), unit std, from the lowest spatial frequencies."""
    spec = np.zeros(shape, dtype=np.complex128)
    c = (cutoff * 2 + 1, cutoff * 2 + 1)
    spec[: c[0], : c[1]] = rng.standard_normal(c) + 1j * rng.standard_normal(c)
    spec = np.roll(spec, (-cutoff, -cutoff), axis=(0, 1))
    field = np.fft.ifft2(spec).real
    return field / max(field.std(), 1e-12)


def phantom_slices(
    size: int, slices: int, rng: np.random.Generator, contrast: str = "T2w", voxel_mm: float = 2.5
) -> np.ndarray:
    """Magnitude images (slices, size, size) float32 in [0, ~1] of axial phantom slices.

    The phantom needs the whole head in its grid (224 x 224 x 140 mm), and its cost grows with
    voxels, so labels are drawn on a coarse grid (`voxel_mm`), mixed with partial volume, given
    per-tissue signal, interpolated to size x size and given a mild smooth texture. Slices are
    spread over the upper-middle brain (ventricles, thalamus, corpus callosum, cortex).
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {sorted(CONTRASTS)}, got {contrast!r}")
    n, nz = round(224.0 / voxel_mm), round(140.0 / voxel_mm)
    labels = make_brain_phantom((n, n, nz), voxel_mm, rng)
    idx = np.linspace(0.42 * nz, 0.72 * nz, slices).round().astype(int)
    fractions = tissue_fractions(labels, sigma_vox=0.5, tissues=TISSUES)
    image = sum(CONTRASTS[contrast][name] * frac[..., idx] for name, frac in fractions.items())
    # (X, Y, Z) with X right->left -> radiological display (slices, rows = anterior->posterior)
    return _display(image, size, rng)


def _display(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(X, Y, slices) images -> (slices, size, size) float32 in radiological display (rows
    anterior -> posterior), bicubic to size x size, with a mild smooth texture."""
    slices = image.shape[-1]
    image = np.ascontiguousarray(np.moveaxis(image, -1, 0).transpose(0, 2, 1)[:, ::-1])
    up = (
        torch.nn.functional.interpolate(
            torch.from_numpy(image.astype(np.float32))[:, None],
            size=(size, size),
            mode="bicubic",
            align_corners=False,
        )[:, 0]
        .clamp_min(0)
        .numpy()
    )
    texture = np.stack([1 + 0.04 * _smooth_field((size, size), rng, 12) for _ in range(slices)])
    return (up * texture).astype(np.float32)


def anatomy_slices(
    size: int, slices: int, rng: np.random.Generator, contrast: str = "T2w", voxel_mm: float = 2.5
) -> np.ndarray:
    """Magnitude images (slices, size, size) float32 of axial slices of an anatomical subject
    (mrinet.sim.anatomy: FreeSurfer aparc+aseg + MNI152 T1 with its own pose and warp).

    Each slice is sampled at `voxel_mm` in-plane and through-plane with partial volume from the
    1 mm atlas, over ANATOMY_FOV_MM square, at evenly spaced heights ANATOMY_SLAB_MM; T2w mixes
    per-tissue signals (ANATOMY_T2W), T1w is the MNI T1 (white matter at 0.82, as CONTRASTS).
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {sorted(CONTRASTS)}, got {contrast!r}")
    voxel_mm = check_voxel_mm(voxel_mm)
    atlas = load_atlas()
    with single_threaded_blas():
        image = _anatomy_image(atlas, slices, rng, contrast, voxel_mm)
    return _display(image, size, rng)


def _anatomy_image(atlas, slices: int, rng, contrast: str, voxel_mm: float) -> np.ndarray:
    """(X, Y, slices) images of one anatomical subject (see anatomy_slices)."""
    n = 2 * round(ANATOMY_FOV_MM / voxel_mm / 2)
    pose = random_pose(rng, (ANATOMY_FOV_MM, ANATOMY_FOV_MM, 172.0))
    image = np.zeros((n, n, slices), dtype=np.float32)
    for s, z in enumerate(np.linspace(*ANATOMY_SLAB_MM, slices)):
        affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
        affine[:3, 3] = [voxel_mm * (n - 1) / 2, -voxel_mm * (n - 1) / 2, z]
        subject = sample_subject(atlas, pose, (n, n, 1), voxel_mm, affine=affine)
        if contrast == "T1w":
            head = 1.0 - subject.fractions["background"]
            image[..., s] = CONTRASTS["T1w"]["wm"] * subject.t1[..., 0] * (head[..., 0] > 0)
        else:
            image[..., s] = sum(
                ANATOMY_T2W[name] * frac[..., 0] for name, frac in subject.fractions.items()
            )
    return image


def nifti_slices(volume: np.ndarray, size: int, slices: int) -> np.ndarray:
    """Magnitude volume (X, Y, Z) -> `slices` central axial images (slices, size, size) in [0, ~1]."""
    vol = np.abs(np.asarray(volume, dtype=np.float32))
    if vol.ndim != 3:
        raise ValueError(f"expected a 3-D magnitude volume, got shape {vol.shape}")
    z = vol.shape[2]
    idx = np.linspace(z * 0.3, z * 0.7, slices).round().astype(int).clip(0, z - 1)
    sel = np.moveaxis(vol[:, :, idx], -1, 0)
    scale = np.percentile(sel[sel > 0], 99) if (sel > 0).any() else 1.0
    img = torch.from_numpy(np.ascontiguousarray(sel / max(scale, 1e-12)))[:, None]
    return torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear")[:, 0].numpy()


def smooth_phase(
    shape: tuple[int, int], rng: np.random.Generator, max_rad: float = 1.0
) -> np.ndarray:
    """Smooth background phase (H, W) in radians, as B0 and receive phase give real images."""
    return max_rad * _smooth_field(shape, rng, 2) / 3.0


def coil_sensitivities(coils: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Complex receive maps (C, H, W) of loops on a ring around the head; RSS max = 1.

    Magnitude falls off with the distance to each loop; phase turns with the angle around it.
    """
    h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    radius, height = 1.25, 0.6
    theta0 = rng.uniform(0, 2 * np.pi)
    maps = []
    for c in range(coils):
        theta = theta0 + 2 * np.pi * c / coils
        cy, cx = radius * np.sin(theta), radius * np.cos(theta)
        dist2 = (x - cx) ** 2 + (y - cy) ** 2 + height**2
        phase = np.arctan2(y - cy, x - cx) + rng.uniform(0, 2 * np.pi)
        maps.append(np.exp(1j * phase) / dist2)
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0)).max()).astype(np.complex64)


def noise_std(images: np.ndarray, snr: float) -> float:
    """Noise std per real/imaginary part and sample for `snr` = mean brain signal / |noise| std.

    The brain signal is the mean of pixels above 5% of the maximum; complex noise with std
    sigma per part has std sigma * sqrt(2) in total.
    """
    signal = float(np.abs(images[images > 0.05 * images.max()]).mean()) if images.max() > 0 else 1.0
    return signal / snr / np.sqrt(2)


def draw_snr(snr: float | Sequence[float], rng: np.random.Generator) -> float:
    """One volume's SNR: `snr` itself, or log-uniform in [low, high] for a range.

    Real cohorts vary in field strength, coils, voxel size and patient size: SNR differs by
    several-fold between scans, so a classifier cannot use the noise level as a label.
    """
    values = [float(snr)] if isinstance(snr, (int, float)) else [float(v) for v in snr]
    if len(values) == 1:
        return values[0]
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ValueError(
            f"snr must be one value or a range [low, high], 0 < low <= high; got {values}"
        )
    low, high = values
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def simulate_kspace(
    images: np.ndarray,
    coils: int,
    rng: np.random.Generator,
    snr: float = 30.0,
    readout_oversampling: int = 1,
) -> np.ndarray:
    """Magnitude images (S, H, W) -> noisy centred k-space (S, C, H * oversampling, W) complex64.

    `snr` = mean brain signal in the coil-combined image / noise std per coil and sample.
    With `readout_oversampling` 2 the field of view doubles along the readout (H), as in
    fastMRI raw data (640 x W), so the object fills the central half.
    """
    s, h, w = images.shape
    hh = h * readout_oversampling
    pad = (hh - h) // 2
    phase = np.stack([smooth_phase((h, w), rng) for _ in range(s)])
    obj = np.zeros((s, hh, w), dtype=np.complex64)
    obj[:, pad : pad + h] = images * np.exp(1j * phase)
    maps = coil_sensitivities(coils, (hh, w), rng)

    kspace = fft2c(torch.from_numpy(maps[None] * obj[:, None])).numpy()
    sigma = noise_std(images, snr)
    noise = rng.standard_normal((2, *kspace.shape), dtype=np.float32) * sigma  # float64
    kspace = kspace.astype(np.complex64, copy=False)
    kspace.real += noise[0]  # in place, rounded once: no complex128 copies of the volume
    kspace.imag += noise[1]
    return kspace
