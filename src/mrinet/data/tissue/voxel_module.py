"""DTI voxel classification DataModule: subjects -> voxels [T1w, FA, MD, AD, RD] -> whole batches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.checks import check_every_class, check_positive
from mrinet.data.contract import DataSpec, class_counts, require_splits
from mrinet.data.loading.batches import TensorBatches, pin_for
from mrinet.data.splits import SPLITS, split_sizes, split_units
from mrinet.data.tissue.columns import mirror_columns
from mrinet.data.tissue.context import ContextSpec
from mrinet.data.tissue.first_stage import assemble_context
from mrinet.data.tissue.reader import SOURCES
from mrinet.data.tissue.settings import ReadsSettings, TissueSettings
from mrinet.data.tissue.subjects import SubjectCodes, Voxels
from mrinet.data.tissue.tables import load_table
from mrinet.data.tissue.voxel_cache import cached_synthetic_voxels
from mrinet.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["SOURCES", "DTIDataModule", "check_every_class", "check_positive"]


class DTIDataModule(ReadsSettings, pl.LightningDataModule):
    """Voxels from synthetic, NIfTI or table sources; split by subject; served as whole batches.

    Features are served raw; `data_spec()` (mean, std of the training split, class counts and
    weights) is stored in the model so eval and predict on new data use the training scaling.
    """

    def __init__(self, **settings: Any) -> None:
        """`settings`: the `data.*` keys of configs/data/dti.yaml, by name (`TissueSettings`)."""
        super().__init__()
        self.settings = s = TissueSettings(**settings)
        self.reader = s.reader()
        self.layout = self.reader.layout
        # spatial context (data/tissue/context.py): coords and/or k^3 patches after the voxel's
        # features; autocontext: the first stage (a checkpoint path, or the dict a second stage
        # carries), loaded here, where the objects are assembled, and handed to the record
        self.context = assemble_context(s.context_spec())
        if self.context.model is not None:
            self.context.model.check_fits(list(s.features), list(s.classes))
        # training voxels plus their left-right mirror images (context only: a voxel alone is
        # the same mirrored); with few subjects, the midline's wander is what the net memorises
        self.mirror_train = s.mirror_train and bool(self.context.kinds)
        if self.context.kinds and s.source == "table":
            raise ConfigError(
                f"data.context={list(self.context.kinds)} needs whole volumes; a voxel table has none",
                "data.context",
                "use data.context=none with data.source=table, or read subject folders (nifti/dwi)",
            )
        self.features, self.classes = self.reader.features, self.reader.classes
        self.label_map = self.reader.label_map
        self.data: dict[str, dict[str, torch.Tensor]] = {}
        self.split_units: dict[str, list[str]] = {}
        self._examples: dict[str, dict] = {}

    # ---- reading -------------------------------------------------------------------------
    def load_voxels(self) -> Voxels:
        """All voxels of the configured source (before splitting)."""
        if self.settings.source == "table":
            if not self.settings.table_path:
                raise ConfigError(
                    "data.source=table needs a table", "data.table_path", "set data.table_path=FILE"
                )
            return load_table(
                self.settings.table_path,
                self.features,
                self.classes,
                str(self.settings.columns.get("label", "label")),
                self.settings.columns.get("subject", "subject"),
                self.settings.drop_nonfinite,
            )
        if self.settings.source == "synthetic":
            return cached_synthetic_voxels(self.reader, self.context)
        return self.reader.voxels(self.context)

    @property
    def feature_names(self) -> list[str]:
        """The model's input columns: data.features, then the spatial context's."""
        return self.context.feature_names(self.features)

    @property
    def volume_source(self) -> str:
        """How subject folders are read: `dwi` fits tensors, otherwise maps are read (`nifti`)."""
        return self.reader.volume_source

    def subjects_root(self) -> Path:
        """The folder of subject folders (the simulated cohort is generated on first use)."""
        return self.reader.root()

    def example_subject(self, split: str = "val") -> dict | None:
        """A whole subject of `split` as volumes, for tissue-map figures (None for tables)."""
        if self.settings.source == "table" or not self.split_units.get(split):
            return None
        if split not in self._examples:
            subject_dir = self.subjects_root() / self.split_units[split][0]
            x, _, volume = self.read_subject(subject_dir, self.context)
            # x: the model's inputs at the class voxels, as in training (context included)
            self._examples[split] = {"name": subject_dir.name, "x": x, **volume}
        return self._examples[split]

    def read_subject(self, subject_dir: Path, context: ContextSpec | None):
        """One subject folder read with this module's features, classes, label map and layout:
        (x at the class voxels, their classes, the volumes) as `subjects.subject_voxels`."""
        return self.reader.read(subject_dir, context)

    def prepare_data(self) -> None:
        self.reader.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        voxels = self.load_voxels()
        if voxels.subjects is not None:
            if isinstance(voxels.subjects, SubjectCodes):  # the cached cohort: no pandas import
                codes, names = voxels.subjects.factorize()
            else:
                import pandas as pd  # lazy: start-up, only tables and first reads need it

                codes, names = pd.factorize(voxels.subjects)  # strings -> ints once, not per split
            self.split_units = split_units(list(names), self.settings.split, self.settings.seed)
            split_of = {
                name: i for i, split in enumerate(SPLITS) for name in self.split_units[split]
            }
            voxel_split = np.asarray([split_of[name] for name in names], dtype=np.int8)[codes]
            parts = {split: voxels.take(voxel_split == i) for i, split in enumerate(SPLITS)}
        else:
            log.warning(
                "no subject column: splitting voxels at random (voxels of one subject may share splits)"
            )
            order = np.random.default_rng(self.settings.seed).permutation(len(voxels.labels))
            bounds = np.cumsum([0, *split_sizes(len(order), self.settings.split)])
            parts = {
                s: voxels.take(np.sort(order[bounds[i] : bounds[i + 1]]))
                for i, s in enumerate(SPLITS)
            }
        for name, fraction in zip(SPLITS, self.settings.split):
            if fraction == 0:
                continue
            counts = np.bincount(parts[name].labels, minlength=len(self.classes))
            check_every_class(self.classes, counts, name, self.settings.where)
        self.data = {
            name: {
                "x": torch.from_numpy(np.ascontiguousarray(part.features)),
                "y": torch.from_numpy(part.labels),
            }
            for name, part in parts.items()
        }
        if self.mirror_train:
            order, sign = mirror_columns(self.feature_names)
            train = self.data["train"]
            mirrored = train["x"][:, torch.from_numpy(order)] * torch.from_numpy(sign)
            train["x"] = torch.cat([train["x"], mirrored])
            train["y"] = torch.cat([train["y"], train["y"]])
        log.info(
            "DTI voxels per split: %s",
            {k: len(v["y"]) for k, v in self.data.items()},
        )

    # ---- what the model needs from the data ------------------------------------------------
    def data_spec(self) -> DataSpec:
        """The model/data contract after setup: classes, training-split feature mean and std
        (float64 sums, std clamped at 1e-6), class counts, inverse-frequency weights if enabled."""
        require_splits("train" in self.data)
        x, y = self.data["train"]["x"].double(), self.data["train"]["y"]
        counts = class_counts(y, self.classes)
        weights = None
        if self.settings.class_weights:
            weights = counts.sum().double() / (len(self.classes) * counts.double())
        return DataSpec(
            classes=self.classes,
            input_mean=x.mean(0),
            input_std=torch.clamp(x.std(0), min=1e-6),
            class_weights=weights,
            class_counts=counts,
            input_shape=(x.shape[1],),
        )

    # ---- loaders ---------------------------------------------------------------------------
    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def _loader(self, name: str, train: bool) -> TensorBatches:
        part = self.data[name]
        trainer = getattr(self, "trainer", None)
        single = trainer is None or trainer.world_size == 1  # grouped steps: one process only
        return TensorBatches(
            part["x"],
            part["y"],
            batch_size=self.settings.batch_size if train else self.settings.eval_batch_size,
            group=self.settings.steps_per_batch if train and single else 1,
            shuffle=train,
            seed=self.settings.seed,
            epoch_fn=self._current_epoch,
            pin_memory=pin_for(trainer),
        )

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)
