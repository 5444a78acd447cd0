"""DTI subject folders (HCP-like): feature maps by name or as FSL dtifit outputs, plus a label volume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.nifti import load_nifti

NIFTI_SUFFIXES = (".nii.gz", ".nii", ".mgz")  # FreeSurfer .mgz loads wherever a NIfTI does
# FSL dtifit names: AD = L1, RD = (L2 + L3) / 2
DTIFIT = {"FA": ("dti_FA",), "MD": ("dti_MD",), "AD": ("dti_L1",), "RD": ("dti_L2", "dti_L3")}


def list_subjects(subjects_dir: str | Path) -> list[Path]:
    """Subject folders in `subjects_dir`, sorted by name (hidden and temporary folders skipped)."""
    subjects_dir = Path(subjects_dir)
    if not subjects_dir.is_dir():
        raise DataNotFoundError(
            "subjects directory not found",
            subjects_dir,
            "set data.subjects_dir to a folder holding one folder per subject",
        )
    subjects = sorted(
        p for p in subjects_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not subjects:
        raise DataNotFoundError(
            "no subject folders found",
            subjects_dir,
            "put one folder per subject (with T1w, FA, MD, AD, RD maps and a label volume) inside it",
        )
    return subjects


def find_nifti(folder: Path, stem: str) -> Path | None:
    """`folder/stem.nii.gz`, `.nii` or `.mgz`, whichever exists first."""
    for suffix in NIFTI_SUFFIXES:
        if (path := folder / f"{stem}{suffix}").is_file():
            return path
    return None


def read_feature_maps(subject_dir: str | Path, names: Sequence[str]):
    """Read the named 3D maps of one subject -> ({name: float32 array}, affine, {name: source path}).

    Each map is `<name>.nii[.gz]`; FA/MD/AD/RD may instead come from FSL dtifit outputs.
    Every map must share one shape and affine.
    """
    subject_dir = Path(subject_dir)
    maps, sources, affine, first = {}, {}, None, None
    for name in names:
        direct = find_nifti(subject_dir, name)
        stems = (name,) if direct else DTIFIT.get(name)
        paths = [find_nifti(subject_dir, s) for s in stems] if stems else [None]
        if any(p is None for p in paths):
            options = f"{name}.nii.gz" + (
                f" or dtifit {' + '.join(s + '.nii.gz' for s in DTIFIT[name])}"
                if name in DTIFIT
                else ""
            )
            raise DataNotFoundError(
                f"map {name!r} missing for subject {subject_dir.name}",
                subject_dir,
                f"add {options}, or remove {name!r} from data.features",
            )
        arrays = []
        for path in paths:
            data, aff = load_nifti(path, ndim=3)
            if affine is None:
                affine, first = aff, path
            _check_same_grid(path, data.shape, aff, first, maps_shape(maps, arrays), affine)
            arrays.append(data)
        maps[name] = arrays[0] if len(arrays) == 1 else np.mean(arrays, axis=0, dtype=np.float32)
        sources[name] = paths[0]
    return maps, affine, sources


def maps_shape(maps: dict, arrays: list) -> tuple | None:
    for array in [*maps.values(), *arrays]:
        return array.shape
    return None


def _check_same_grid(path, shape, affine, ref_path, ref_shape, ref_affine) -> None:
    if ref_shape is not None and tuple(shape) != tuple(ref_shape):
        raise DataFormatError(
            f"shape {tuple(shape)} differs from {tuple(ref_shape)} of {Path(ref_path).name}",
            path,
            "resample all maps and the label volume to the same (diffusion) grid",
        )
    if not np.allclose(affine, ref_affine, atol=1e-4):
        raise DataFormatError(
            f"affine differs from that of {Path(ref_path).name}",
            path,
            "all maps and the label volume must share one voxel grid (same affine); resample them",
        )


def find_label_file(path: str | Path) -> Path:
    """The label volume at `path`, or the same name with another image suffix (.nii.gz, .nii,
    .mgz: `aparc+aseg.nii.gz` finds FreeSurfer's `aparc+aseg.mgz`); `path` itself when none."""
    path = Path(path)
    if path.is_file():
        return path
    name = path.name
    stem = next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.endswith(s)), None)
    if stem is not None:
        found = find_nifti(path.parent, stem)
        if found is not None:
            return found
    return path


def read_label_volume(path: str | Path, shape, affine) -> np.ndarray:
    """Integer label volume (FreeSurfer aparc+aseg, NIfTI or .mgz) on the feature maps' grid."""
    path = find_label_file(path)
    labels, label_affine = load_nifti(path, ndim=3, dtype=np.float64)
    if tuple(labels.shape) != tuple(shape):
        raise DataFormatError(
            f"label volume shape {labels.shape} differs from the feature maps' {tuple(shape)}",
            path,
            "set data.resample_labels=true (nearest neighbour onto the diffusion grid), "
            "or resample it yourself (e.g. mri_convert -rt nearest)",
        )
    _check_same_grid(path, labels.shape, label_affine, "feature maps", shape, affine)
    if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
        raise DataFormatError(
            "label volume holds non-integer values",
            path,
            "labels must be integer codes; re-save the segmentation as an integer image "
            "(resampling with linear interpolation creates fractions: use nearest neighbour)",
        )
    return labels.astype(np.int32)
