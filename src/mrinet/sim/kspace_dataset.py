"""Simulated fastMRI-style multi-coil datasets: one HDF5 file per volume, resumable.

python scripts/make_kspace_dataset.py --out DIR --volumes 20 --slices 16 --coils 8 --seed 0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.sim.kspace import (
    CONTRASTS,
    anatomy_slices,
    draw_snr,
    nifti_slices,
    noise_std,
    phantom_slices,
    simulate_kspace,
)
from mrinet.utils.progress import progress as progress_bar


def volume_name(index: int, contrast: str = "T2w") -> str:
    """File stem of simulated volume `index`, fastMRI-like (`file_brain_AXT2_sim_0003`)."""
    return f"file_brain_AX{contrast[:2].upper()}_sim_{index:04d}"


def simulate_kspace_dataset(
    out_dir: str | Path,
    volumes: int = 20,
    slices: int = 16,
    coils: int = 8,
    seed: int = 0,
    size: int = 320,
    snr: float | Sequence[float] = 30.0,
    contrast: str | Sequence[str] = "T2w",
    anatomy: str | Path | None = None,
    readout_oversampling: int = 1,
    voxel_mm: float = 2.5,
    progress: bool = True,
) -> list[Path]:
    """Write `volumes` fastMRI multicoil files into `out_dir`; returns their paths.

    Volume i draws from `numpy.random.default_rng([seed, i])`, so files are identical whether
    made in one run or resumed, in any order or process (`simulate_kspace_volume` writes one):
    finished files are skipped, each file is written atomically.
    `anatomy` = None or "geometric" uses the geometric brain phantom, "mni_aparc" the anatomical
    one (FreeSurfer aparc+aseg + MNI152 T1, a pose and warp per volume: mrinet.sim.anatomy), a
    NIfTI path that magnitude volume.
    `snr` (mean brain signal / noise std per coil and sample) is one value, or a range
    [low, high] from which each volume draws its own (log-uniform); the file records the
    volume's SNR and noise std in its simulation attributes. `contrast` is one of
    `mrinet.sim.kspace.CONTRASTS` or a list that volumes take in turn (volume i gets
    contrast[i % len]), as a fastMRI brain set mixes AXT1 and AXT2 series.
    """
    settings = dict(
        slices=slices,
        coils=coils,
        seed=seed,
        size=size,
        snr=snr,
        contrast=contrast,
        anatomy=anatomy,
        readout_oversampling=readout_oversampling,
        voxel_mm=voxel_mm,
    )
    _check_contrasts(contrast)
    source = _nifti_source(anatomy)
    prepare_out_dir(out_dir)
    return [
        simulate_kspace_volume(out_dir, i, source=source, **settings)
        for i in progress_bar(range(volumes), "simulating k-space", volumes, progress)
    ]


def volume_path(out_dir: str | Path, index: int, contrast: str | Sequence[str] = "T2w") -> Path:
    """Where volume `index` of a simulated dataset with these contrasts is written."""
    contrasts = [contrast] if isinstance(contrast, str) else [str(c) for c in contrast]
    return Path(out_dir) / f"{volume_name(index, contrasts[index % len(contrasts)])}.h5"


def prepare_out_dir(out_dir: str | Path) -> None:
    """Create `out_dir` and delete the half-written volumes of a killed run (once per run)."""
    from mrinet.io.atomic import remove_stale_temporaries

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)


def _check_contrasts(contrast: str | Sequence[str]) -> list[str]:
    contrasts = [contrast] if isinstance(contrast, str) else [str(c) for c in contrast]
    unknown = sorted(set(contrasts) - set(CONTRASTS))
    if unknown or not contrasts:
        raise ValueError(f"contrast must be some of {sorted(CONTRASTS)}, got {contrasts}")
    return contrasts


_PHANTOMS = {None: "phantom", "geometric": "phantom", "mni_aparc": "mni_aparc"}


def _nifti_source(anatomy: str | Path | None) -> np.ndarray | None:
    """The magnitude volume of a NIfTI `anatomy` (None for the built-in phantoms)."""
    if anatomy in _PHANTOMS:
        return None
    from mrinet.io.nifti import load_nifti

    return load_nifti(anatomy, ndim=3)[0]


def simulate_kspace_volume(
    out_dir: str | Path,
    index: int,
    slices: int = 16,
    coils: int = 8,
    seed: int = 0,
    size: int = 320,
    snr: float | Sequence[float] = 30.0,
    contrast: str | Sequence[str] = "T2w",
    anatomy: str | Path | None = None,
    readout_oversampling: int = 1,
    voxel_mm: float = 2.5,
    source: np.ndarray | None = None,
) -> Path:
    """Write volume `index` of `simulate_kspace_dataset` (same settings) unless it exists; its
    path. `source`: the NIfTI `anatomy` already read (read here when None)."""
    from mrinet.io.fastmri import write_kspace_volume

    contrasts = _check_contrasts(contrast)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    volume_contrast = contrasts[index % len(contrasts)]
    path = volume_path(out_dir, index, contrasts)
    if path.exists():
        return path
    if source is None and anatomy not in _PHANTOMS:
        source = _nifti_source(anatomy)
    rng = np.random.default_rng([seed, index])
    if anatomy == "mni_aparc":
        images = anatomy_slices(size, slices, rng, contrast=volume_contrast, voxel_mm=voxel_mm)
    elif source is None:
        images = phantom_slices(size, slices, rng, contrast=volume_contrast, voxel_mm=voxel_mm)
    else:
        images = nifti_slices(source, size, slices)
    volume_snr = draw_snr(snr, rng)
    kspace = simulate_kspace(
        images, coils, rng, snr=volume_snr, readout_oversampling=readout_oversampling
    )
    params = {
        "simulator": "mrinet.sim.kspace",
        "slices": slices,
        "coils": coils,
        "seed": seed,
        "size": size,
        "snr": snr if isinstance(snr, (int, float)) else [float(v) for v in snr],
        "contrast": contrast if isinstance(contrast, str) else [str(c) for c in contrast],
        "voxel_mm": voxel_mm,
        "readout_oversampling": readout_oversampling,
        "anatomy": _PHANTOMS.get(anatomy, str(anatomy)),
    }
    write_kspace_volume(
        path,
        kspace,
        patient_id=f"sim{seed:04d}_{index:04d}",
        acquisition=f"AX{volume_contrast[:2].upper()}",
        simulation={
            **params,
            "volume": index,
            "contrast": volume_contrast,
            "volume_snr": volume_snr,
            "noise_std": noise_std(images, volume_snr),
        },
    )
    return path


if __name__ == "__main__":  # the old command path; the command is mrinet.cli.simulate_kspace
    from mrinet.cli.simulate_kspace import run

    run()
