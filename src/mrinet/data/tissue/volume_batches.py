"""Volumes served for segmentation CNNs: random training crops (`VolumeCrops`) and one whole
subject per evaluation batch (`WholeVolumes`, subjects dealt to DDP ranks)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mrinet.data.loading.sharding import rank_and_world


class VolumeCrops:
    """Iterable of (x (B, F, k, k, k), y (B, k, k, k)) training crops, `batches` per epoch.

    volumes: per subject (inputs (F, X, Y, Z), classes (X, Y, Z) int64, right axis). A crop's
    centre is a random voxel of a uniformly drawn class (of those the subject has), moved by up
    to k/4 voxels, clipped so the crop lies inside the volume.
    """

    def __init__(
        self,
        volumes: Sequence[tuple[torch.Tensor, torch.Tensor, int]],
        crop_size: int,
        batch_size: int,
        batches: int,
        seed: int,
        epoch_fn,
        mirror: bool = False,
        rotate_deg: float = 0.0,
        scale: float = 0.0,
        augment_prob: float = 0.0,
    ) -> None:
        self.rotate_deg, self.scale, self.augment_prob = (
            float(rotate_deg),
            float(scale),
            float(augment_prob),
        )
        # subjects without any class voxel have nothing to centre a crop on
        self.volumes = [v for v in volumes if bool((v[1] >= 0).any())]
        self.k = int(crop_size)
        self.batch_size, self.batches = int(batch_size), int(batches)
        self.seed, self.epoch_fn, self.mirror = int(seed), epoch_fn, bool(mirror)
        # per subject, the (n, 3) voxel indices of each class it has
        self.class_voxels = [
            [v for v in (torch.nonzero(y == c) for c in range(int(y.max()) + 1)) if len(v)]
            for _, y, _ in self.volumes
        ]

    def __len__(self) -> int:
        return self.batches

    def crop(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(rng.integers(len(self.volumes)))
        x, y, r_axis = self.volumes[s]
        voxels = self.class_voxels[s][int(rng.integers(len(self.class_voxels[s])))]
        centre = voxels[int(rng.integers(len(voxels)))].tolist()
        shift = rng.integers(-(self.k // 4), self.k // 4 + 1, size=3)
        start = [
            int(np.clip(c + d - self.k // 2, 0, max(n - self.k, 0)))
            for c, d, n in zip(centre, shift, y.shape)
        ]
        if self.augment_prob > 0 and rng.random() < self.augment_prob:
            centre = [a + self.k // 2 for a in start]
            xc, yc = self.resampled_crop(x, y, centre, rng)
        else:
            sl = tuple(slice(a, a + self.k) for a in start)
            xc, yc = x[(slice(None), *sl)], y[sl]
        if self.mirror and rng.random() < 0.5:
            xc, yc = xc.flip(1 + r_axis), yc.flip(r_axis)
        return xc, yc

    def resampled_crop(self, x: torch.Tensor, y: torch.Tensor, centre, rng: np.random.Generator):
        """A crop around `centre` rotated by up to `rotate_deg` about each axis and scaled by
        1 +- `scale` per axis (voxel units): maps trilinear, labels nearest neighbour, outside
        the volume 0 (maps) and -1 (labels). The anatomy's tilt and size vary between subjects
        more than 4 training subjects show (nnU-Net's standard augmentation, much reduced)."""
        import torch.nn.functional as F

        angles = np.deg2rad(rng.uniform(-self.rotate_deg, self.rotate_deg, size=3))
        matrix = np.diag(rng.uniform(1 - self.scale, 1 + self.scale, size=3))
        for axis, angle in enumerate(angles):
            a, b = [i for i in range(3) if i != axis]
            turn = np.eye(3)
            turn[a, a] = turn[b, b] = np.cos(angle)
            turn[a, b], turn[b, a] = -np.sin(angle), np.sin(angle)
            matrix = turn @ matrix
        offsets = np.stack(
            np.meshgrid(*[np.arange(self.k) - self.k // 2] * 3, indexing="ij"), -1
        ).reshape(-1, 3)
        source = np.asarray(centre, dtype=np.float64) + offsets @ matrix.T  # (k^3, 3) voxels
        size = np.asarray(y.shape, dtype=np.float64)
        grid = (2 * source / np.maximum(size - 1, 1) - 1)[:, ::-1]  # grid_sample wants (z, y, x)
        grid = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)).reshape(
            1, self.k, self.k, self.k, 3
        )
        xc = F.grid_sample(x[None], grid, mode="bilinear", align_corners=True)[0]
        labels = (y + 1).to(torch.float32)[None, None]
        yc = F.grid_sample(labels, grid, mode="nearest", align_corners=True)[0, 0]
        return xc, yc.round().to(torch.int64) - 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, _ = rank_and_world()
        rng = np.random.default_rng([self.seed, int(self.epoch_fn()), rank])
        for _ in range(self.batches):
            crops = [self.crop(rng) for _ in range(self.batch_size)]
            yield torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


class WholeVolumes:
    """Iterable of (x (1, F, X, Y, Z), y (1, X, Y, Z)): one subject per batch, this rank's share
    (subjects dealt to ranks in turn)."""

    def __init__(self, volumes: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        self.volumes = list(volumes)

    def _mine(self) -> list:
        rank, world = rank_and_world()
        mine = self.volumes[rank::world]
        if not mine and self.volumes:
            # fewer subjects than ranks: Lightning needs a batch on every rank; this one runs
            # the first subject with no voxel labelled, so it counts nowhere (metrics stay exact)
            x, y, r_axis = self.volumes[0]
            mine = [(x, torch.full_like(y, -1), r_axis)]
        return mine

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self):
        for x, y, _ in self._mine():
            yield x[None], y[None]
