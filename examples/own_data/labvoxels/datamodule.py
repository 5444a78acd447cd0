"""A LightningDataModule for the lab format that feeds mrinet's classifier unchanged.

What mrinet relies on (docs/extending.md, "The DataSpec contract"):
- `setup(stage)` loads the splits (by subject: no subject in two splits);
- `data_spec()` after setup: a mrinet.data.contract.DataSpec with the classes, the training
  split's per-feature mean/std (the model standardises inside, so checkpoints take raw maps),
  class counts and `input_shape=(features,)`, which sizes the net's first layer;
- loaders that yield (x (B, F) float32, y (B,) int64) batches;
- optional `example_subject(split)` for mrinet.callbacks.TissueMapLogger's tissue maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from labvoxels.subject_file import read_subject
from mrinet.data.contract import DataSpec, class_counts
from mrinet.errors import ConfigError, DataNotFoundError

SPLITS = ("train", "val", "test")


class LabVoxelDataModule(pl.LightningDataModule):
    """Voxels of `root/*.npz` (labvoxels.subject_file) as rows of `features`, split by subject."""

    def __init__(
        self,
        root: str,
        features: Sequence[str] = ("T1w", "FA", "MD", "SbS0"),
        classes: Sequence[str] = ("thalamus", "corpus_callosum", "cortical_wm"),
        split: Sequence[float] = (0.5, 0.25, 0.25),
        batch_size: int = 512,
        eval_batch_size: int = 65536,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(split) != 3 or min(split) <= 0:
            raise ConfigError(f"data.split={list(split)}", "data.split", "three fractions > 0")
        self.root, self.features, self.classes = Path(root), list(features), list(classes)
        self.split, self.seed = [float(s) for s in split], int(seed)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.subjects: dict[str, list[Path]] = {}
        self.rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _split_subjects(self) -> dict[str, list[Path]]:
        files = sorted(self.root.glob("*.npz"))
        if len(files) < 3:
            raise DataNotFoundError(
                f"{len(files)} subject files (*.npz) in {self.root}; a train/val/test split needs 3",
                self.root,
                "write subjects with `python -m labvoxels.convert NIFTI_DIR OUT_DIR` and set data.root=OUT_DIR",
            )
        order = np.random.default_rng(self.seed).permutation(len(files))
        n_val = max(1, round(self.split[1] / sum(self.split) * len(files)))
        n_test = max(1, round(self.split[2] / sum(self.split) * len(files)))
        n_train = len(files) - n_val - n_test
        picks = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
        return {name: [files[i] for i in sorted(p)] for name, p in zip(SPLITS, picks)}

    def _subject(self, path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Maps and class volume in this module's class order (-1: none of its classes)."""
        maps, classes, names = read_subject(path, self.features)
        unknown = [c for c in self.classes if c not in names]
        if unknown:
            raise ConfigError(
                f"{path} has no class {unknown[0]!r} (it has {names})",
                "data.classes",
                f"choose from {names}",
            )
        ours = np.full(classes.shape, -1, dtype=np.int64)
        for index, name in enumerate(self.classes):
            ours[classes == names.index(name)] = index
        return maps, ours

    def setup(self, stage: str | None = None) -> None:
        if self.rows:  # mrinet.train calls setup("fit") before Lightning does
            return
        self.subjects = self._split_subjects()
        for name, paths in self.subjects.items():
            xs, ys = [], []
            for path in paths:
                maps, classes = self._subject(path)
                inside = classes >= 0
                xs.append(np.stack([maps[f][inside] for f in self.features], axis=1))
                ys.append(classes[inside])
            self.rows[name] = (
                torch.from_numpy(np.concatenate(xs)),
                torch.from_numpy(np.concatenate(ys)),
            )

    def data_spec(self) -> DataSpec:
        """What the model needs from this data: classes, scaling, counts, the input width."""
        if "train" not in self.rows:
            raise ConfigError("data_spec() before setup()", "data", "call setup('fit') first")
        x, y = self.rows["train"][0].double(), self.rows["train"][1]
        return DataSpec(
            classes=self.classes,
            input_mean=x.mean(0),
            input_std=x.std(0).clamp(min=1e-6),
            class_counts=class_counts(y, self.classes),
            input_shape=(x.shape[1],),
        )

    def _loader(self, name: str, train: bool) -> DataLoader:
        x, y = self.rows[name]
        generator = torch.Generator().manual_seed(self.seed)
        batch = self.batch_size if train else self.eval_batch_size
        return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=train, generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def example_subject(self, split: str = "val") -> dict | None:
        """A whole subject for the tissue maps: its maps (X, Y, Z) and classes (-1: none)."""
        if not self.subjects.get(split):
            return None
        path = self.subjects[split][0]
        maps, classes = self._subject(path)
        return {"name": path.stem, "maps": maps, "classes": classes}
