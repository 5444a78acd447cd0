"""Sampling the atlas on a subject's grid: labels at voxel centres, tissue fractions and T1
averaged over each voxel from a finer grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mrinet.sim.anatomy.atlas import ATLAS_VOXEL_MM, MNI_TISSUES, Atlas, gather
from mrinet.sim.anatomy.blas import single_threaded_blas
from mrinet.sim.anatomy.warp import SubjectPose
from mrinet.sim.phantom import phantom_affine


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
        return gather(volume, self.index, fill)


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
        group = gather(atlas.group, index, 0)
        counts = group_fractions(group, k, len(names))
        for g, name in enumerate(names):
            fractions[name][x0:x1] = counts[g]
        t1[x0:x1] = block_average(gather(atlas.t1, index, 0.0), k)
    index, template = _atlas_index(atlas, pose, axes, slice(None))
    return SubjectAnatomy(
        labels=gather(atlas.labels, index, 0).astype(np.int32),
        tissue=gather(atlas.tissue_codes, index, 0).astype(np.int32),
        fractions=fractions,
        t1=t1,
        template=template,
        pose=pose,
        index=index,
    )
