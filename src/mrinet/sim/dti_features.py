"""First DTI cohort generator: per-tissue feature distributions written as NIfTI subject folders.

A stand-in until the DWI physics simulator lands: feature maps are drawn per tissue (lecture-like
class means) and mixed with a random neighbouring tissue by a partial-volume fraction, so classes
overlap the way real borders do. Writes the `nifti` subject layout the DataModule reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrinet.io.nifti import save_nifti

SIMULATOR_VERSION = "features-2"
# FreeSurfer code -> (T1w, FA, MD, AD, RD) mean, MD/AD/RD in um^2/ms
TISSUES = {
    10: (898.0, 0.22, 1.07, 1.33, 0.94),  # thalamus
    251: (1007.0, 0.68, 0.39, 0.72, 0.22),  # corpus callosum
    2: (867.0, 0.38, 0.58, 0.82, 0.45),  # cerebral white matter
    3: (700.0, 0.15, 0.85, 0.98, 0.78),  # cortex (not a class: must be ignored)
}
SPREAD = np.array([70.0, 0.08, 0.12, 0.14, 0.12])


def simulate_feature_cohort(
    out_dir: str | Path,
    subjects: int = 8,
    seed: int = 0,
    shape: tuple[int, int, int] = (24, 28, 20),
    partial_volume: float = 0.35,
) -> list[Path]:
    """Write `subjects` folders (T1w/FA/MD/AD/RD + aparc+aseg NIfTI, 2 mm voxels) into `out_dir`."""
    rng = np.random.default_rng(seed)
    codes = np.array(list(TISSUES))
    means = np.array(list(TISSUES.values()))
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    written = []
    for index in range(subjects):
        labels = codes[rng.choice(len(codes), size=shape, p=[0.2, 0.15, 0.45, 0.2])]
        own = means[[list(TISSUES).index(c) for c in labels.ravel()]].reshape(*shape, 5)
        other = means[rng.integers(0, len(codes), size=shape)]
        mix = rng.uniform(0.0, partial_volume, size=(*shape, 1))
        values = (1 - mix) * own + mix * other + rng.normal(size=(*shape, 5)) * SPREAD
        values[..., 1] = np.clip(values[..., 1], 0.0, 1.0)
        values[..., 2:] = np.clip(values[..., 2:], 0.05, None)
        subject = Path(out_dir) / f"sub-{index:03d}"
        subject.mkdir(parents=True, exist_ok=True)
        for j, name in enumerate(("T1w", "FA", "MD", "AD", "RD")):
            save_nifti(subject / f"{name}.nii.gz", values[..., j].astype(np.float32), affine)
        save_nifti(subject / "aparc+aseg.nii.gz", labels.astype(np.int32), affine)
        written.append(subject)
    return written
