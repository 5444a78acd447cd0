"""DTI voxels from subject folders: [T1w, FA, MD, AD, RD] per voxel and its class.

Lightning-free: the DataModules, predict and the baselines read subjects through these
functions (voxel tables: data/tissue/tables.py).
MD/AD/RD come out in um^2/ms whatever unit the files use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrinet.data.tissue.context import ContextSpec, context_columns
from mrinet.data.tissue.dwi_features import dwi_feature_maps
from mrinet.data.tissue.geometry import patch_columns
from mrinet.errors import ConfigError, DataFormatError
from mrinet.io.layouts import check_hcp_subject, get_layout
from mrinet.io.nifti import load_nifti
from mrinet.io.resample import load_labels_on_grid
from mrinet.io.subjects import list_subjects, read_feature_maps, read_label_volume

log = logging.getLogger(__name__)

DIFFUSIVITIES = ("MD", "AD", "RD")


@dataclass
class SubjectCodes:
    """The subject of each voxel as codes into `names`, as pandas' Categorical holds it, without
    importing pandas (~0.3 s of start-up on the cached cohort's path)."""

    codes: np.ndarray
    names: np.ndarray

    def __getitem__(self, index) -> SubjectCodes | str:
        if isinstance(index, (int, np.integer)):  # one voxel: its subject's name
            return str(self.names[self.codes[index]])
        return SubjectCodes(self.codes[index], self.names)

    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self):
        return (str(name) for name in self.names[self.codes])

    def factorize(self) -> tuple[np.ndarray, list[str]]:
        """(codes into the subjects present, their names): pandas.factorize's pair, up to order."""
        present = np.flatnonzero(np.bincount(self.codes, minlength=len(self.names)))
        remap = np.full(len(self.names), -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        return remap[self.codes], [str(n) for n in self.names[present]]


@dataclass
class Voxels:
    """Voxel samples: features (N, F) float32, class index (N,) int64, subject id per voxel
    (an array, a pandas Categorical or `SubjectCodes`)."""

    features: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray | SubjectCodes | None

    def take(self, mask: np.ndarray) -> Voxels:
        subjects = None if self.subjects is None else self.subjects[mask]
        return Voxels(self.features[mask], self.labels[mask], subjects)


def convert_diffusivity_units(
    maps: dict[str, np.ndarray], where: str, mask: np.ndarray | None = None
) -> bool:
    """Scale MD/AD/RD given in mm^2/s to um^2/ms in place; returns whether it converted."""
    present = [k for k in DIFFUSIVITIES if k in maps]
    if not present:
        return False
    values = np.concatenate(
        [maps[k][mask] if mask is not None else maps[k].ravel() for k in present]
    )
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return False
    median = float(np.median(values))
    if median < 0.02:  # brain tissue: ~0.0003-0.003 mm^2/s, ~0.3-3 um^2/ms
        for k in present:
            maps[k] = maps[k] * 1000.0
        log.info(
            "%s: diffusivities look like mm^2/s (median %.2g): converted to um^2/ms", where, median
        )
        return True
    if not 0.02 <= median <= 10.0:
        raise DataFormatError(
            f"implausible diffusivity scale: median MD/AD/RD {median:.3g}",
            where,
            "give MD/AD/RD in um^2/ms (tissue ~0.3-3) or mm^2/s (~0.0003-0.003)",
        )
    return False


def check_fa_range(fa: np.ndarray, where: str) -> None:
    """FA is a normalised variance: values outside [0, 1] mean a wrong map or scaling."""
    finite = fa[np.isfinite(fa)]
    if finite.size and (finite.min() < -1e-3 or finite.max() > 1.0 + 1e-3):
        raise DataFormatError(
            f"FA outside [0, 1] (min {finite.min():.3g}, max {finite.max():.3g})",
            where,
            "check that the FA map is not scaled (e.g. x1000) or swapped with another map",
        )


def class_lookup(classes: Sequence[str], label_map: Mapping[str, Sequence[int]]) -> dict[int, int]:
    """FreeSurfer code -> class index (order of `classes`)."""
    lookup: dict[int, int] = {}
    for index, name in enumerate(classes):
        if name not in label_map:
            raise ConfigError(
                f"class {name!r} has no entry in the label map (known: {sorted(label_map)})",
                "data.label_map",
                f"add data.label_map.{name}=[codes] or remove it from data.classes",
            )
        for code in label_map[name]:
            if int(code) in lookup:
                raise ConfigError(
                    f"label code {code} is mapped to two classes",
                    "data.label_map",
                    "give every FreeSurfer code to one class only",
                )
            lookup[int(code)] = index
    return lookup


def read_subject(
    subject_dir: str | Path, features: Sequence[str], source: str = "nifti", layout: str = "flat"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One subject's feature maps ({name: 3D float32}, MD/AD/RD in um^2/ms) and their affine.

    `nifti` reads the maps (or dtifit outputs); `dwi` fits tensors to the raw DWI itself. An
    HCP subject (`layout="hcp"`) ships no tensor maps: its tensors are always fitted from
    T1w/Diffusion/data.nii.gz.
    """
    if source == "dwi" or layout == "hcp":
        maps, affine = dwi_feature_maps(subject_dir, layout=layout)
        missing = [name for name in features if name not in maps]
        if missing:
            raise ConfigError(
                f"features {missing} cannot be derived from raw DWI (available: {sorted(maps)})",
                "data.features",
                "use features among T1w, FA, MD, AD, RD with data.source=dwi",
            )
        return {name: maps[name] for name in features}, affine

    maps, affine, _ = read_feature_maps(subject_dir, features)
    return maps, affine


def read_labels(
    subject_dir: Path, label_file: str, shape, affine, resample: bool = False, layout: str = "flat"
) -> np.ndarray:
    """The subject's label volume on the feature grid; another grid is resampled (nearest
    neighbour) only when `resample` is set (always for HCP's 0.7 mm aparc+aseg), else it is an
    error that names the fix. NIfTI or FreeSurfer .mgz."""
    files = get_layout(layout)
    path = files.label_path(Path(subject_dir), label_file)
    if resample or not files.labels_on_diffusion_grid:
        return load_labels_on_grid(path, shape, affine, resample=True)
    return read_label_volume(path, shape, affine)


def read_brain_mask(subject_dir: Path, shape, affine, layout: str = "flat"):
    """The subject's brain mask (bool X, Y, Z) and its path; (None, path) when it is absent."""
    path = Path(subject_dir) / get_layout(layout).brain_mask
    if not path.is_file():
        return None, path
    mask, mask_affine = load_nifti(path, ndim=3)
    if mask.shape != tuple(shape) or not np.allclose(mask_affine, affine, atol=1e-4):
        raise DataFormatError(
            f"brain mask grid {mask.shape} differs from the feature maps' {tuple(shape)}",
            path,
            "give the brain mask on the diffusion grid (FSL bet on the b0 image)",
        )
    return mask > 0, path


def subject_voxels(
    subject_dir: Path,
    features: Sequence[str],
    lookup: Mapping[int, int],
    label_file: str,
    source: str = "nifti",
    resample_labels: bool = False,
    context: ContextSpec | None = None,
    layout: str = "flat",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Class voxels of one subject -> (inputs (N, F + K), class index (N,), volume info).

    Inputs are the features, then the spatial context columns (`context`, data/tissue/context.py)."""
    if layout == "hcp":
        check_hcp_subject(subject_dir, label_file)
    maps, affine = read_subject(subject_dir, features, source, layout)
    shape = next(iter(maps.values())).shape
    labels = read_labels(subject_dir, label_file, shape, affine, resample_labels, layout)
    codes = np.array(sorted(lookup), dtype=np.int64)
    mask = np.isin(labels, codes)
    convert_diffusivity_units(maps, str(subject_dir), mask if mask.any() else None)
    if "FA" in maps:
        check_fa_range(maps["FA"][mask], str(subject_dir / "FA"))
    x = np.stack([maps[name][mask] for name in features], axis=1).astype(np.float32)
    if context is not None and context.kinds:
        x = np.concatenate(
            [x, subject_context(subject_dir, maps, features, mask, affine, context, layout)], 1
        )
    table = np.full(int(codes.max()) + 1 if codes.size else 1, -1, dtype=np.int64)
    table[codes] = [lookup[int(c)] for c in codes]
    classes = np.where(mask, table[np.clip(labels, 0, len(table) - 1)], -1)
    return x, classes[mask], {"maps": maps, "affine": affine, "classes": classes}


def subject_context(
    subject_dir: Path,
    maps: Mapping[str, np.ndarray],
    features: Sequence[str],
    inside: np.ndarray,
    affine: np.ndarray,
    context: ContextSpec,
    layout: str = "flat",
) -> np.ndarray:
    """Context columns (N, K) of the voxels in `inside` (coords need the subject's brain mask;
    autocontext runs the first stage on the whole subject, then reads its maps like a patch)."""
    brain, brain_path = (None, None)
    if "coords" in context.kinds:
        brain, brain_path = read_brain_mask(subject_dir, inside.shape, affine, layout)
    columns = context_columns(
        dict(maps),
        features,
        inside,
        affine,
        context.kinds,
        context.patch_size,
        brain,
        brain_path or subject_dir,
        context.patch_dilation,
    )
    if "autocontext" not in context.kinds:
        return columns
    stage = context.model.log_probabilities(subject_dir, maps, affine, layout)
    around = patch_columns(stage, inside, affine, context.patch_size, context.patch_dilation)
    return np.concatenate([columns, stage[:, inside].T, around], axis=1)


def load_subjects(
    subjects_dir: str | Path,
    features: Sequence[str],
    classes: Sequence[str],
    label_map: Mapping[str, Sequence[int]],
    label_file: str = "aparc+aseg.nii.gz",
    source: str = "nifti",
    resample_labels: bool = False,
    context: ContextSpec | None = None,
    layout: str = "flat",
) -> Voxels:
    """Read every subject folder and keep the voxels whose label code maps to a class."""
    import pandas as pd

    lookup = class_lookup(classes, label_map)
    folders = list_subjects(subjects_dir)
    parts, codes, labels_all = [], [], []
    for index, subject_dir in enumerate(folders):
        x, y, _ = subject_voxels(
            subject_dir, features, lookup, label_file, source, resample_labels, context, layout
        )
        parts.append(x)
        labels_all.append(y)
        codes.append(np.full(len(y), index, dtype=np.int32))
    # subject per voxel as a Categorical: integer codes, not a million Python strings
    subjects = pd.Categorical.from_codes(
        np.concatenate(codes), categories=[f.name for f in folders]
    )
    return Voxels(np.concatenate(parts), np.concatenate(labels_all), subjects)
