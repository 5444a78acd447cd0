"""Raw diffusion data in HCP/FSL layout: data.nii.gz, bvals (1 row), bvecs (3 rows), brain mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.atomic import atomic_file
from mrinet.io.nifti import load_nifti

DWI_FILE = "data.nii.gz"
BVALS_FILE = "bvals"
BVECS_FILE = "bvecs"
MASK_FILE = "nodif_brain_mask.nii.gz"


def _read_table(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(
            "gradient file not found", path, "put FSL-style 'bvals' and 'bvecs' beside the DWI"
        )
    try:
        return np.atleast_2d(np.loadtxt(path, dtype=np.float64))
    except ValueError as err:
        raise DataFormatError(
            f"cannot parse numbers ({err})", path, "write plain whitespace-separated numbers"
        ) from err


def read_bvals_bvecs(
    bvals_path: str | Path, bvecs_path: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """FSL text files -> bvals (N,) in s/mm^2 and bvecs (N, 3); either bvecs layout is accepted."""
    bvals_path, bvecs_path = Path(bvals_path), Path(bvecs_path)
    bvals = _read_table(bvals_path)
    if min(bvals.shape) != 1:
        raise DataFormatError(
            f"bvals must be one row or column, got shape {bvals.shape}",
            bvals_path,
            "write the b-values (s/mm^2) as a single row, one per volume",
        )
    bvals = bvals.reshape(-1)
    if np.any(bvals < 0) or not np.all(np.isfinite(bvals)):
        raise DataFormatError("bvals contain negative or non-finite values", bvals_path, "fix them")
    bvecs = _read_table(bvecs_path)
    n = bvals.size
    if bvecs.shape == (3, n):
        bvecs = bvecs.T
    elif bvecs.shape != (n, 3):
        raise DataFormatError(
            f"bvecs shape {bvecs.shape} does not match {n} bvals (expected 3 x {n} or {n} x 3)",
            bvecs_path,
            f"give one unit vector per volume, as 3 rows of {n} numbers (FSL layout)",
        )
    bvecs = np.where(np.isnan(bvecs), 0.0, bvecs)
    norms = np.linalg.norm(bvecs, axis=1)
    bad = (bvals > 50.0) & (np.abs(norms - 1.0) > 1e-2)
    if bad.any():
        raise DataFormatError(
            f"bvecs of diffusion-weighted volumes {np.flatnonzero(bad)[:5].tolist()} are not unit "
            f"vectors (norms {np.round(norms[bad][:5], 3).tolist()})",
            bvecs_path,
            "normalise the gradient directions, or check that bvals and bvecs belong together",
        )
    return bvals, bvecs


def write_bvals_bvecs(bvals_path, bvecs_path, bvals, bvecs) -> None:
    """Write FSL text: bvals one row, bvecs three rows (x, y, z); atomically."""
    bvals = np.asarray(bvals, dtype=np.float64).reshape(1, -1)
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.shape[0] != 3:
        bvecs = bvecs.T
    for path, table, fmt in ((bvals_path, bvals, "%g"), (bvecs_path, bvecs, "%.8f")):
        with atomic_file(path) as tmp:
            np.savetxt(tmp, table, fmt=fmt)


def read_dwi_subject(
    subject_dir: str | Path,
    dwi_file: str = DWI_FILE,
    bvals_file: str = BVALS_FILE,
    bvecs_file: str = BVECS_FILE,
    mask_file: str | None = MASK_FILE,
):
    """HCP-layout folder -> dwi (X, Y, Z, N) float32, bvals (N,), bvecs (N, 3), affine, mask.

    The mask is the brain mask (bool X, Y, Z), or None when `mask_file` is None or absent.
    """
    subject_dir = Path(subject_dir)
    if not subject_dir.is_dir():
        raise DataNotFoundError(
            "subject folder not found", subject_dir, "point to a folder holding data.nii.gz"
        )
    dwi_path = subject_dir / dwi_file
    dwi, affine = load_nifti(dwi_path, ndim=4)
    bvals, bvecs = read_bvals_bvecs(subject_dir / bvals_file, subject_dir / bvecs_file)
    if dwi.shape[3] != bvals.size:
        raise DataFormatError(
            f"{dwi_path.name} has {dwi.shape[3]} volumes but {bvals_file} lists {bvals.size} "
            "b-values",
            subject_dir,
            "use the bvals/bvecs written with this DWI series (one entry per volume)",
        )
    mask = None
    if mask_file is not None and (subject_dir / mask_file).is_file():
        mask_data, mask_affine = load_nifti(subject_dir / mask_file, ndim=3)
        if mask_data.shape != dwi.shape[:3] or not np.allclose(mask_affine, affine, atol=1e-4):
            raise DataFormatError(
                f"brain mask shape {mask_data.shape} / affine differ from the DWI {dwi.shape[:3]}",
                subject_dir / mask_file,
                "give a mask on the diffusion grid (e.g. FSL bet on the b0 image)",
            )
        mask = mask_data > 0
    return dwi, bvals, bvecs, affine, mask
