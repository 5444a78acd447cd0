"""Where voxels are: world axes of an affine, brain-normalised coordinates, neighbour gathers.

Plain arrays in, arrays out (numpy, one torch gather): the geometry every tissue module and the
first stage share, with no knowledge of configs or files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.data.tissue.columns import check_patch_size, neighbour_offsets
from mrinet.errors import DataFormatError, DataNotFoundError


def world_axes(affine: np.ndarray) -> tuple[list[int], list[bool]]:
    """For each world axis (R, A, S): the array axis closest to it and whether it runs backwards."""
    rot = np.asarray(affine, dtype=np.float64)[:3, :3]
    order = [int(np.argmax(np.abs(rot[w]))) for w in range(3)]
    if sorted(order) != [0, 1, 2]:  # oblique: fall back to nibabel's optimal assignment
        import nibabel as nib

        ornt = nib.orientations.io_orientation(affine)  # array axis -> (world axis, sign)
        order = [int(np.flatnonzero(ornt[:, 0] == w)[0]) for w in range(3)]
    flips = [bool(rot[w, order[w]] < 0) for w in range(3)]
    return order, flips


def brain_coords(
    affine: np.ndarray, brain_mask: np.ndarray | None, where: str | Path = "brain mask"
) -> np.ndarray:
    """Brain-normalised coordinates (3, X, Y, Z) float32 along the brain's own R, A, S axes.

    World positions (affine, mm) relative to the brain mask's centre, projected on the mask's
    principal axes (`brain_axes`) and divided by its spread along each: coordinates transfer
    across subjects, head sizes and tilts, and scanners' storage conventions.
    """
    if brain_mask is None:
        raise DataNotFoundError(
            "spatial context `coords` needs a brain mask and there is none",
            where,
            "add nodif_brain_mask.nii.gz to the subject folder (FSL bet), or set data.context=none",
        )
    mask = np.asarray(brain_mask) > 0
    if mask.ndim != 3 or mask.sum() < 2:
        raise DataFormatError(
            f"brain mask is empty ({int(mask.sum())} voxel(s) inside, shape {mask.shape})",
            where,
            "give a brain mask with the brain set to 1 (e.g. FSL bet -m), or set data.context=none",
        )
    affine = np.asarray(affine, dtype=np.float64)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in mask.shape), indexing="ij")
    world = np.stack(
        [sum(affine[a, b] * grids[b] for b in range(3)) + affine[a, 3] for a in range(3)]
    )
    inside = world[:, mask]  # (3, M) mm
    centre = inside.mean(1)
    axes, spread = brain_axes(inside - centre[:, None])
    local = np.einsum("wa,w...->a...", axes, world - centre[:, None, None, None])
    return (local / spread[:, None, None, None]).astype(np.float32)


def brain_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (3, 3; column a = brain axis a) and spreads (3,) of centred (3, M) points.

    Column a is the principal axis closest to world axis a (R, A, S), signed to point along it:
    the frame turns with the head (a tilted head gives the same coordinates), yet keeps RAS
    meaning, so the midline is coordinate 0 of axis R however the head sits in the scanner.
    """
    cov = points @ points.T / max(points.shape[1], 1)
    values, vectors = np.linalg.eigh(cov)
    order = [int(np.argmax(np.abs(vectors[w]) * (1 + 1e-9 * np.arange(3)))) for w in range(3)]
    if sorted(order) != [0, 1, 2]:  # near-spherical: keep the world axes
        return np.eye(3), np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    axes = vectors[:, order]
    axes *= np.sign(np.diag(axes))[None, :]
    return axes, np.sqrt(np.clip(values[order], 1e-12, None))


def patch_columns(
    volumes: np.ndarray,
    inside: np.ndarray,
    affine: np.ndarray,
    patch_size: int,
    dilation=1,
):
    """Neighbours of each voxel in `inside` -> (N, F * M) float32, in input_columns
    order (per feature, its M = len(neighbour_offsets) neighbours).

    volumes: (F, X, Y, Z) feature maps; inside: (X, Y, Z) bool; neighbours `dilation` voxels
    apart (2: a 3^3 patch spans 5^3 voxels at the cost of 3^3), or several patches
    (`parse_dilations`). The volumes are reoriented to the world axes, zero-padded (background
    is 0) for the widest patch, and every (voxel, neighbour) pair of every patch is read with
    one gather at flat index centre + offset (no per-voxel Python; ~0.1 s per 120k-voxel
    subject and 26 neighbours).
    """
    import torch

    k = check_patch_size(patch_size, volumes.shape[1:])
    offsets = neighbour_offsets(k, dilation)
    order, flips = world_axes(affine)
    vol = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))
    idx = torch.from_numpy(np.argwhere(inside))  # (N, 3) array indices
    vol = vol.permute(0, *(1 + a for a in order))
    idx = idx[:, order]
    shape = torch.tensor(vol.shape[1:])
    for w in range(3):
        if flips[w]:
            vol = vol.flip(1 + w)
            idx[:, w] = shape[w] - 1 - idx[:, w]
    r = [max((abs(o[w]) for o in offsets), default=0) for w in range(3)]  # reach along R, A, S
    padded = torch.nn.functional.pad(vol, (r[2], r[2], r[1], r[1], r[0], r[0]))
    _, _, py, pz = padded.shape
    # neighbour offsets as flat strides of the padded volume
    steps = torch.tensor([a * py * pz + b * pz + c for a, b, c in offsets], dtype=torch.int64)
    centre = ((idx[:, 0] + r[0]) * py + (idx[:, 1] + r[1])) * pz + (idx[:, 2] + r[2])  # (N,)
    flat = padded.reshape(vol.shape[0], -1)
    gathered = flat[:, centre[:, None] + steps[None, :]]  # (F, N, M): one gather
    return gathered.permute(1, 0, 2).reshape(len(idx), -1).numpy()


def volume_inputs(maps: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """Feature maps -> (F, X, Y, Z) float32 channels in `features` order, non-finite -> 0."""
    stack = np.stack([np.asarray(maps[name], dtype=np.float32) for name in features])
    return np.where(np.isfinite(stack), stack, 0.0).astype(np.float32, copy=False)


def right_axis(affine: np.ndarray) -> int:
    """The array axis closest to world R (the axis a left-right mirror flips)."""
    return world_axes(affine)[0][0]
