"""Simulated fastMRI-style multi-coil datasets: one HDF5 file per volume, resumable.

python scripts/make_kspace_dataset.py --out DIR --volumes 20 --slices 16 --coils 8 --seed 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mrinet.io.atomic import remove_stale_temporaries
from mrinet.io.fastmri import write_kspace_volume
from mrinet.io.nifti import load_nifti
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


@dataclass(frozen=True)
class KspaceSimulation:
    """What each simulated volume is made of (`simulate_kspace_dataset`'s settings).

    `anatomy` = None or "geometric" uses the geometric brain phantom, "mni_aparc" the anatomical
    one (FreeSurfer aparc+aseg + MNI152 T1, a pose and warp per volume: mrinet.sim.anatomy), a
    NIfTI path that magnitude volume.
    `snr` (mean brain signal / noise std per coil and sample) is one value, or a range
    [low, high] from which each volume draws its own (log-uniform); the file records the
    volume's SNR and noise std in its simulation attributes. `contrast` is one of
    `mrinet.sim.kspace.CONTRASTS` or a list that volumes take in turn (volume i gets
    contrast[i % len]), as a fastMRI brain set mixes AXT1 and AXT2 series.
    """

    slices: int = 16
    coils: int = 8
    seed: int = 0
    size: int = 320
    snr: float | Sequence[float] = 30.0
    contrast: str | Sequence[str] = "T2w"
    anatomy: str | Path | None = None
    readout_oversampling: int = 1
    voxel_mm: float = 2.5

    @property
    def contrasts(self) -> list[str]:
        """The contrasts volumes take in turn (a ValueError for unknown ones)."""
        c = self.contrast
        contrasts = [c] if isinstance(c, str) else [str(v) for v in c]
        unknown = sorted(set(contrasts) - set(CONTRASTS))
        if unknown or not contrasts:
            raise ValueError(f"contrast must be some of {sorted(CONTRASTS)}, got {contrasts}")
        return contrasts

    def path(self, out_dir: str | Path, index: int) -> Path:
        """Where volume `index` is written."""
        contrasts = self.contrasts
        return Path(out_dir) / f"{volume_name(index, contrasts[index % len(contrasts)])}.h5"

    def source(self) -> np.ndarray | None:
        """The magnitude volume of a NIfTI `anatomy` (None for the built-in phantoms)."""
        if self.anatomy in _PHANTOMS:
            return None
        return load_nifti(self.anatomy, ndim=3)[0]

    def record(self) -> dict:
        """The settings as the files record them (`mrinet_simulation`)."""
        snr, contrast = self.snr, self.contrast
        return {
            "simulator": "mrinet.sim.kspace",
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "snr": snr if isinstance(snr, (int, float)) else [float(v) for v in snr],
            "contrast": contrast if isinstance(contrast, str) else [str(c) for c in contrast],
            "anatomy": _PHANTOMS.get(self.anatomy, str(self.anatomy)),
        }


_PHANTOMS = {None: "phantom", "geometric": "phantom", "mni_aparc": "mni_aparc"}


def simulate_kspace_dataset(
    out_dir: str | Path, volumes: int = 20, progress: bool = True, **settings
) -> list[Path]:
    """Write `volumes` fastMRI multicoil files into `out_dir`; returns their paths.

    `settings`: KspaceSimulation's fields (slices, coils, seed, size, snr, contrast, anatomy,
    readout_oversampling, voxel_mm). Volume i draws from `numpy.random.default_rng([seed, i])`,
    so files are identical whether made in one run or resumed, in any order or process
    (`simulate_kspace_volume` writes one): finished files are skipped, each file is written
    atomically.
    """
    sim = KspaceSimulation(**settings)
    sim.contrasts  # noqa: B018 - a bad contrast is reported before anything is written
    source = sim.source()
    prepare_out_dir(out_dir)
    return [
        simulate_kspace_volume(out_dir, i, sim, source)
        for i in progress_bar(range(volumes), "simulating k-space", volumes, progress)
    ]


def prepare_out_dir(out_dir: str | Path) -> None:
    """Create `out_dir` and delete the half-written volumes of a killed run (once per run)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)


def simulate_kspace_volume(
    out_dir: str | Path,
    index: int,
    sim: KspaceSimulation | None = None,
    source: np.ndarray | None = None,
) -> Path:
    """Write volume `index` of `simulate_kspace_dataset` with settings `sim` unless it exists;
    its path. `source`: the NIfTI `anatomy` already read (read here when None)."""
    sim = KspaceSimulation() if sim is None else sim
    contrast = sim.contrasts[index % len(sim.contrasts)]
    path = sim.path(out_dir, index)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    source = sim.source() if source is None else source
    rng = np.random.default_rng([sim.seed, index])
    if sim.anatomy == "mni_aparc":
        images = anatomy_slices(sim.size, sim.slices, rng, contrast, sim.voxel_mm)
    elif source is None:
        images = phantom_slices(sim.size, sim.slices, rng, contrast, sim.voxel_mm)
    else:
        images = nifti_slices(source, sim.size, sim.slices)
    volume_snr = draw_snr(sim.snr, rng)
    kspace = simulate_kspace(
        images, sim.coils, rng, snr=volume_snr, readout_oversampling=sim.readout_oversampling
    )
    write_kspace_volume(
        path,
        kspace,
        patient_id=f"sim{sim.seed:04d}_{index:04d}",
        acquisition=f"AX{contrast[:2].upper()}",
        simulation={
            **sim.record(),
            "volume": index,
            "contrast": contrast,
            "volume_snr": volume_snr,
            "noise_std": noise_std(images, volume_snr),
        },
    )
    return path


if __name__ == "__main__":  # the old command path; the command is mrinet.cli.simulate_kspace
    from mrinet.cli.simulate_kspace import run

    run()
