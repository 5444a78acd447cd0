"""Write the lab format from NIfTI subject folders (T1w, FA, MD, data.nii.gz + bvals, labels).

    python -m labvoxels.convert NIFTI_SUBJECTS_DIR OUT_DIR

SbS0, the extra map: the mean diffusion-weighted signal over the mean b=0 signal per voxel
(the powder average at the shell's b-value), from the raw DWI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from labvoxels.subject_file import CLASS_NAMES, LABEL_CODES, write_subject


def powder_average_ratio(dwi: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Mean of the b > 50 volumes over the mean of the b <= 50 volumes (X, Y, Z), 0 where S0 = 0."""
    b0 = dwi[..., bvals <= 50].mean(-1)
    dw = dwi[..., bvals > 50].mean(-1)
    return np.divide(dw, b0, out=np.zeros_like(b0), where=b0 > 0)


def convert_subject(folder: Path, out: Path) -> Path:
    """One NIfTI subject folder -> out/<folder name>.npz."""
    maps = {name: nib.load(folder / f"{name}.nii.gz").get_fdata() for name in ("T1w", "FA", "MD")}
    dwi = nib.load(folder / "data.nii.gz").get_fdata()
    maps["SbS0"] = powder_average_ratio(dwi, np.loadtxt(folder / "bvals").ravel())
    codes = np.asarray(nib.load(folder / "aparc+aseg.nii.gz").dataobj).astype(np.int64)
    classes = np.full(codes.shape, -1, dtype=np.int64)
    for index, name in enumerate(CLASS_NAMES):
        classes[np.isin(codes, LABEL_CODES[name])] = index
    return write_subject(out / f"{folder.name}.npz", maps, classes)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subjects_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in args.subjects_dir.iterdir() if (p / "FA.nii.gz").is_file())
    if not folders:
        raise SystemExit(f"no subject folders with FA.nii.gz in {args.subjects_dir}")
    written = [convert_subject(folder, args.out_dir) for folder in folders]
    print(f"{len(written)} subjects written to {args.out_dir}")
    return written


if __name__ == "__main__":
    main()
