"""Whole DTI feature volumes for segmentation CNNs: random training crops, whole-subject evaluation.

The same subjects, splits, classes, label maps and unit checks as `DTIDataModule` (the voxel
MLP's), served as volumes: inputs (B, F, X, Y, Z) with the feature maps as channels (non-finite
values and background 0), targets (B, X, Y, Z) with the class index at class voxels and -1
elsewhere (ignored by the cost and the metrics). So a CNN's Dice is computed over exactly the
voxels an MLP's is, and the two are comparable on the same test subjects.

Training draws `crops_per_epoch` crops of `crop_size`^3 voxels per epoch, each centred near a
voxel of a class drawn uniformly (the 2-3 voxel thin callosal slab is otherwise rarely seen),
optionally mirrored left-right (`mirror_train`: flipped along the array axis closest to world
R; FreeSurfer's labels are left-right symmetric in meaning, the left/right codes map to one
class). Crops are seeded by (seed, epoch, rank): reproducible, different per DDP rank.
Validation and test serve one whole subject per batch (under DDP, subjects are dealt to ranks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from mrinet.data.dti import DTIDataModule, check_every_class, check_positive
from mrinet.data.sharding import rank_and_world
from mrinet.data.spec import DataSpec, class_counts, require_splits
from mrinet.data.splits import SPLITS, split_units
from mrinet.errors import ConfigError

log = logging.getLogger(__name__)


def volume_inputs(maps: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """Feature maps -> (F, X, Y, Z) float32 channels in `features` order, non-finite -> 0."""
    stack = np.stack([np.asarray(maps[name], dtype=np.float32) for name in features])
    return np.where(np.isfinite(stack), stack, 0.0).astype(np.float32, copy=False)


def right_axis(affine: np.ndarray) -> int:
    """The array axis closest to world R (the axis a left-right mirror flips)."""
    from mrinet.data.context import world_axes

    return world_axes(affine)[0][0]


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


class DTIVolumeDataModule(DTIDataModule):
    """DTI subjects as whole volumes (see the module docstring); `data_spec` as the voxel
    module's (per-feature mean/std and class counts over the training class voxels).

    crop_size: training crop side in voxels; batch_size: crops per optimizer step;
    crops_per_epoch: crops drawn per epoch (an epoch is crops_per_epoch / batch_size steps).
    """

    def __init__(
        self,
        *args,
        crop_size: int = 48,
        crops_per_epoch: int = 32,
        augment_prob: float = 0.0,
        rotate_deg: float = 0.0,
        scale: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.context.kinds:
            raise ConfigError(
                f"data.context={list(self.context.kinds)}: a volume model sees every voxel's "
                "neighbourhood through its convolutions and takes the feature maps only",
                "data.context",
                "use data.context=none with data=dti_volumes (context is for the voxel MLP)",
            )
        if self.source == "table":
            raise ConfigError(
                "data.source=table has no volumes for a segmentation CNN",
                "data.source",
                "use data.source=synthetic, nifti or dwi (subject folders)",
            )
        self.crop_size = check_positive("data.crop_size", crop_size, 48)
        self.crops_per_epoch = check_positive("data.crops_per_epoch", crops_per_epoch, 32)
        if (
            not 0.0 <= float(augment_prob) <= 1.0
            or float(rotate_deg) < 0
            or not 0 <= float(scale) < 1
        ):
            raise ConfigError(
                f"data.augment_prob={augment_prob}, data.rotate_deg={rotate_deg}, "
                f"data.scale={scale}: need 0 <= augment_prob <= 1, rotate_deg >= 0, 0 <= scale < 1",
                "data.augment_prob",
                "e.g. data.augment_prob=0.5 data.rotate_deg=10 data.scale=0.1 (0: no augmentation)",
            )
        self.augment = {
            "augment_prob": float(augment_prob),
            "rotate_deg": float(rotate_deg),
            "scale": float(scale),
        }
        # mirror_train needs no context here: a flipped crop is a flipped subject
        self.mirror_train = bool(kwargs.get("mirror_train", False))
        self.volumes: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    def read_volume(self, name: str, root: Path | None = None) -> dict:
        """One subject: {"name", "x" (F, X, Y, Z) float32, "maps", "affine", "classes"}."""
        _, _, volume = self.read_subject((root or self.subjects_root()) / name, None)
        return {"name": name, "x": volume_inputs(volume["maps"], self.features), **volume}

    def setup(self, stage: str | None = None) -> None:
        if self.volumes:
            return
        from mrinet.io.subjects import list_subjects

        root = self.subjects_root()
        names = [f.name for f in list_subjects(root)]
        self.split_units = split_units(names, self.split, self.seed)
        for split in SPLITS:
            volumes = []
            for name in self.split_units[split]:
                subject = self.read_volume(name, root)
                volumes.append(
                    (
                        torch.from_numpy(subject["x"]),
                        torch.from_numpy(subject["classes"].astype(np.int64)),
                        right_axis(subject["affine"]),
                    )
                )
            self.volumes[split] = volumes
        for split, fraction in zip(SPLITS, self.split):
            if not fraction:
                continue
            check_every_class(
                self.classes,
                self._counts(split).numpy(),
                split,
                self.subjects_dir or self.cache_dir,
            )
        shapes = {tuple(x.shape[1:]) for v in self.volumes.values() for x, _, _ in v}
        if min(min(s) for s in shapes) < self.crop_size:
            raise ConfigError(
                f"data.crop_size={self.crop_size} is larger than a volume ({sorted(shapes)})",
                "data.crop_size",
                f"use data.crop_size<={min(min(s) for s in shapes)}",
            )
        log.info(
            "DTI volumes per split: %s",
            {k: [tuple(x.shape[1:]) for x, _, _ in v] for k, v in self.volumes.items()},
        )

    def _counts(self, split: str) -> torch.Tensor:
        labels = [y[y >= 0] for _, y, _ in self.volumes[split]]
        return class_counts(torch.cat(labels) if labels else torch.zeros(0), self.classes)

    def data_spec(self) -> DataSpec:
        """Classes, per-feature mean/std (float64 sums) and counts over the training class voxels."""
        require_splits(bool(self.volumes.get("train")))
        x = torch.cat([x[:, y >= 0].double() for x, y, _ in self.volumes["train"]], dim=1)
        return DataSpec(
            classes=self.classes,
            input_mean=x.mean(1),
            input_std=torch.clamp(x.std(1), min=1e-6),
            class_counts=self._counts("train"),
            input_shape=(x.shape[0], None, None, None),  # whole volumes or crops of any size
        )

    def example_subject(self, split: str = "val") -> dict | None:
        """A whole subject of `split` for the tissue maps: "x" is the model's input (1, F, X, Y, Z)."""
        if not self.split_units.get(split):
            return None
        if split not in self._examples:  # the split's first subject, already in memory
            x, classes, _ = self.volumes[split][0]
            self._examples[split] = {
                "name": self.split_units[split][0],
                "x": x[None].numpy(),
                "maps": {name: x[i].numpy() for i, name in enumerate(self.features)},
                "classes": classes.numpy(),
            }
        return self._examples[split]

    def train_dataloader(self) -> VolumeCrops:
        batches = max(self.crops_per_epoch // self.batch_size, 1)
        return VolumeCrops(
            self.volumes["train"],
            self.crop_size,
            self.batch_size,
            batches,
            self.seed,
            self._current_epoch,
            self.mirror_train,
            **self.augment,
        )

    def val_dataloader(self) -> WholeVolumes:
        return WholeVolumes(self.volumes["val"])

    def test_dataloader(self) -> WholeVolumes:
        return WholeVolumes(self.volumes["test"])
