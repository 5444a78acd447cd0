"""Nearest-neighbour resampling of label volumes between grids, through their world affines."""

from __future__ import annotations

import numpy as np

from mrinet.errors import DataFormatError
from mrinet.io.nifti import load_nifti
from mrinet.io.subjects import find_label_file


def resample_labels(
    labels: np.ndarray,
    labels_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    fill: int = 0,
) -> np.ndarray:
    """Labels (X, Y, Z) on one grid -> (target_shape) on another, nearest neighbour in world mm.

    Each target voxel centre is mapped to world coordinates by `target_affine`, then to the
    source grid by the inverse of `labels_affine`, and takes the label of the nearest source
    voxel (e.g. aparc+aseg on HCP's 0.7 mm T1w grid -> the 1.25 mm diffusion grid). Target
    voxels outside the source grid get `fill`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D, got shape {labels.shape}")
    to_source = np.linalg.inv(np.asarray(labels_affine, float)) @ np.asarray(target_affine, float)
    out = np.full(tuple(int(n) for n in target_shape), fill, dtype=labels.dtype)
    ii, jj = np.meshgrid(*(np.arange(n) for n in out.shape[:2]), indexing="ij")
    for k in range(out.shape[2]):  # one slice at a time keeps the index arrays small
        src = [
            to_source[a, 0] * ii + to_source[a, 1] * jj + to_source[a, 2] * k + to_source[a, 3]
            for a in range(3)
        ]
        idx = [np.floor(c + 0.5).astype(np.int64) for c in src]
        inside = np.ones(ii.shape, dtype=bool)
        for a in range(3):
            inside &= (idx[a] >= 0) & (idx[a] < labels.shape[a])
        out[:, :, k][inside] = labels[idx[0][inside], idx[1][inside], idx[2][inside]]
    return out


def load_labels_on_grid(
    path,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    resample: bool = False,
) -> np.ndarray:
    """Read a label NIfTI (int32) on the target grid; resample it only when asked.

    A label volume on another grid (HCP's aparc+aseg is on the 0.7 mm T1w grid) raises a
    DataFormatError that names the fix unless `resample` is True.
    """
    path = find_label_file(path)
    labels, affine = load_nifti(path, ndim=3, dtype=np.int32)
    same_grid = labels.shape == tuple(target_shape) and np.allclose(
        affine, target_affine, atol=1e-4
    )
    if same_grid:
        return labels
    if not resample:
        raise DataFormatError(
            f"label volume grid {labels.shape} differs from the diffusion grid "
            f"{tuple(target_shape)} (or their affines differ)",
            path,
            "set data.resample_labels=true to resample it with nearest neighbour, or give labels on "
            "the diffusion grid",
        )
    return resample_labels(labels, affine, target_shape, target_affine)
