"""Feature maps [T1w, FA, MD, AD, RD] of a raw-DWI subject (HCP layout), fitted here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrinet.errors import DataFormatError
from mrinet.io.dwi import read_dwi_subject
from mrinet.io.layouts import check_hcp_subject, get_layout
from mrinet.io.nifti import load_nifti

FEATURES = ("T1w", "FA", "MD", "AD", "RD")


def dwi_feature_maps(
    subject_dir: str | Path,
    max_bval: float = 1200.0,
    b0_threshold: float = 50.0,
    shell_tolerance: float = 50.0,
    method: str = "wls",
    t1w_file: str | None = None,
    layout: str = "flat",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Subject folder -> ({T1w, FA, MD, AD, RD}: (X, Y, Z) float32, affine 4x4).

    Reads data.nii.gz + bvals + bvecs (+ nodif_brain_mask.nii.gz when present) where `layout`
    (mrinet.io.layouts: `flat` or `hcp`, i.e. T1w/Diffusion/...) puts them, keeps the b0s
    (b <= b0_threshold; HCP stores them as b=5) and whole shells with mean b <= max_bval (HCP
    shells are jittered +-15, grouped with `shell_tolerance`), fits tensors in the mask
    (MD/AD/RD in um^2/ms, 0 outside) and reads T1w on the same grid.
    """
    # lazy: the tensor fit imports torch; reading subject maps stays torch-free (mrinet-predict start-up)
    from mrinet.mri.dti import fit_tensor, select_volumes

    subject_dir = Path(subject_dir)
    files = get_layout(layout)
    if files.name == "hcp":
        check_hcp_subject(subject_dir, label_file=None)  # every file but the labels
    t1w_file = t1w_file or files.t1w
    dwi, bvals, bvecs, affine, mask = read_dwi_subject(
        subject_dir, files.dwi, files.bvals, files.bvecs, files.brain_mask
    )
    keep = select_volumes(bvals, max_bval, b0_threshold, shell_tolerance)
    n_b0 = int((bvals[keep] <= b0_threshold).sum())
    if n_b0 == 0 or n_b0 == int(keep.sum()):
        raise DataFormatError(
            f"need b0 volumes (b <= {b0_threshold}) and a shell with b <= {max_bval} for the "
            f"tensor fit; b-values present: {sorted(set(np.round(bvals).tolist()))[:10]}",
            subject_dir / files.bvals,
            "adjust max_bval / b0_threshold to the acquisition's b-values",
        )
    if mask is None:  # no brain mask: fit where the mean b0 has signal
        mask = dwi[..., bvals <= b0_threshold].mean(-1) > 0
    sub = dwi if keep.all() else dwi[..., keep]
    fit = fit_tensor(sub, bvals[keep], bvecs[keep], method=method, mask=mask)

    t1w_path = subject_dir / t1w_file
    t1w, t1w_affine = load_nifti(t1w_path, ndim=3)
    if t1w.shape != dwi.shape[:3] or not np.allclose(t1w_affine, affine, atol=1e-4):
        raise DataFormatError(
            f"T1w grid {t1w.shape} differs from the diffusion grid {dwi.shape[:3]}",
            t1w_path,
            "give T1w resampled to diffusion space (HCP: T1w_acpc_dc_restore_1.25.nii.gz)",
        )
    maps = {"T1w": t1w.astype(np.float32)}
    for key in ("FA", "MD", "AD", "RD"):
        maps[key] = getattr(fit, key.lower()).numpy().astype(np.float32)
    return maps, affine
