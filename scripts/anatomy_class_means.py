"""Class means of FA, MD (um^2/ms) and T1w per FreeSurfer structure over a simulated (or real)
cohort: the figures docs/anatomy.md compares with the literature.

    python scripts/anatomy_class_means.py data/dti_synthetic/<cohort>   (flat subject folders)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

STRUCTURES = {
    "corpus callosum (251-255)": (251, 252, 253, 254, 255),
    "cerebral WM (2/41)": (2, 41),
    "thalamus (10/49)": (10, 49),
    "caudate (11/50)": (11, 50),
    "putamen (12/51)": (12, 51),
    "pallidum (13/52)": (13, 52),
    "brain stem (16)": (16,),
    "cortex (1000s/2000s)": (3, 42, *range(1000, 1036), *range(2000, 2036)),
    "lateral ventricles (4/43)": (4, 43),
}


def class_means(folder: Path) -> dict[str, tuple[float, float, float, int]]:
    """(FA, MD, T1w, voxels) per structure of one flat subject folder; the ventricles' interior
    (all 6 neighbours ventricle) is reported as an extra row, free of partial volume."""
    from scipy.ndimage import binary_erosion

    from mrinet.io.nifti import load_nifti

    labels = load_nifti(folder / "aparc+aseg.nii.gz")[0]
    maps = {n: load_nifti(folder / f"{n}.nii.gz")[0] for n in ("FA", "MD", "T1w")}
    rows = {}
    groups = dict(STRUCTURES)
    for name, codes in groups.items():
        mask = np.isin(labels, codes)
        rows[name] = (*(float(maps[m][mask].mean()) for m in ("FA", "MD", "T1w")), int(mask.sum()))
    inner = binary_erosion(np.isin(labels, (4, 43)))
    if inner.any():
        rows["ventricle interior"] = (
            *(float(maps[m][inner].mean()) for m in ("FA", "MD", "T1w")),
            int(inner.sum()),
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path, help="folder of flat subject folders (sub-*)")
    args = parser.parse_args(argv)
    subjects = sorted(p for p in args.cohort.iterdir() if (p / "aparc+aseg.nii.gz").is_file())
    per = [class_means(p) for p in subjects]
    print(
        f"{len(subjects)} subjects in {args.cohort}; mean over subjects (min-max of subject means)"
    )
    print(f"{'structure':28s} {'FA':>18s} {'MD um^2/ms':>18s} {'T1w':>8s} {'voxels':>8s}")
    out = {}
    for name in per[0]:
        v = np.array([p[name] for p in per if name in p])
        out[name] = v.mean(0)
        fa, md = v[:, 0], v[:, 1]
        print(
            f"{name:28s} {fa.mean():6.3f} ({fa.min():.2f}-{fa.max():.2f})"
            f" {md.mean():6.3f} ({md.min():.2f}-{md.max():.2f}) {v[:, 2].mean():8.0f}"
            f" {v[:, 3].mean():8.0f}"
        )
    return out


if __name__ == "__main__":
    main()
