"""Whole DTI feature volumes for segmentation CNNs: random training crops, whole-subject evaluation.

The same subjects, splits, classes, label maps and unit checks as `DTIDataModule` (the voxel
MLP's: both hold one `SubjectReader`, reader.py), served as volumes: inputs (B, F, X, Y, Z) with the feature maps as channels (non-finite
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
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.checks import check_every_class
from mrinet.data.contract import DataSpec, class_counts, require_splits
from mrinet.data.splits import SPLITS, split_units
from mrinet.data.tissue.geometry import right_axis, volume_inputs
from mrinet.data.tissue.settings import ReadsSettings, VolumeSettings
from mrinet.data.tissue.volume_batches import VolumeCrops, WholeVolumes
from mrinet.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DTIVolumeDataModule", "VolumeCrops", "WholeVolumes", "right_axis", "volume_inputs"]


class DTIVolumeDataModule(ReadsSettings, pl.LightningDataModule):
    """DTI subjects as whole volumes (see the module docstring); `data_spec` as the voxel
    module's (per-feature mean/std and class counts over the training class voxels).

    crop_size: training crop side in voxels; batch_size: crops per optimizer step;
    crops_per_epoch: crops drawn per epoch (an epoch is crops_per_epoch / batch_size steps).
    """

    def __init__(self, **settings: Any) -> None:
        """`settings`: the keys of configs/data/dti_volumes.yaml, by name (`VolumeSettings`:
        dti.yaml's, which this config inherits, and the crops'). The voxel MLP's table,
        class-weight, grouped-step and context settings are accepted and refused where they
        would mean something: a table source and any spatial context."""
        super().__init__()
        self.settings = s = VolumeSettings(**settings)
        self.reader = s.reader()
        spec = s.context_spec()
        if spec.kinds:
            raise ConfigError(
                f"data.context={list(spec.kinds)}: a volume model sees every voxel's "
                "neighbourhood through its convolutions and takes the feature maps only",
                "data.context",
                "use data.context=none with data=dti_volumes (context is for the voxel MLP)",
            )
        if s.source == "table":
            raise ConfigError(
                "data.source=table has no volumes for a segmentation CNN",
                "data.source",
                "use data.source=synthetic, nifti or dwi (subject folders)",
            )
        self.features, self.classes = self.reader.features, self.reader.classes
        # mirror_train needs no context here: a flipped crop is a flipped subject
        self.mirror_train = s.mirror_train
        self.volumes: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
        self.split_units: dict[str, list[str]] = {}
        self._examples: dict[str, dict] = {}

    def subjects_root(self) -> Path:
        """The folder of subject folders (the simulated cohort is generated on first use)."""
        return self.reader.root()

    def prepare_data(self) -> None:
        self.reader.prepare()

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    def read_volume(self, name: str, root: Path | None = None) -> dict:
        """One subject: {"name", "x" (F, X, Y, Z) float32, "maps", "affine", "classes"}."""
        _, _, volume = self.reader.read((root or self.subjects_root()) / name)
        return {"name": name, "x": volume_inputs(volume["maps"], self.features), **volume}

    def setup(self, stage: str | None = None) -> None:
        if self.volumes:
            return
        root = self.subjects_root()
        names = self.reader.names(root)
        self.split_units = split_units(names, self.settings.split, self.settings.seed)
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
        for split, fraction in zip(SPLITS, self.settings.split):
            if not fraction:
                continue
            check_every_class(
                self.classes,
                self._counts(split).numpy(),
                split,
                self.reader.where,
            )
        shapes = {tuple(x.shape[1:]) for v in self.volumes.values() for x, _, _ in v}
        if min(min(s) for s in shapes) < self.settings.crop_size:
            raise ConfigError(
                f"data.crop_size={self.settings.crop_size} is larger than a volume ({sorted(shapes)})",
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
        batches = max(self.settings.crops_per_epoch // self.settings.batch_size, 1)
        return VolumeCrops(
            self.volumes["train"],
            self.settings.crop_size,
            self.settings.batch_size,
            batches,
            self.settings.seed,
            self._current_epoch,
            self.mirror_train,
            **self.settings.augment,
        )

    def val_dataloader(self) -> WholeVolumes:
        return WholeVolumes(self.volumes["val"])

    def test_dataloader(self) -> WholeVolumes:
        return WholeVolumes(self.volumes["test"])
