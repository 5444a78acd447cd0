"""The model/data contract: what a model needs from its data, as one typed, checkpointed object.

A DataModule builds its `DataSpec` after `setup` (`datamodule.data_spec()`); the entry point
hands it to the model (`model.set_data_spec(spec)`); the model stores it in every checkpoint,
so eval and predict on new data use the training split's scaling and class order. The model
never reads DataModule attributes, and the DataModule knows nothing of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from mrinet.errors import CheckpointError, ConfigError


def _floats(values) -> tuple[float, ...] | None:
    if values is None:
        return None
    if torch.is_tensor(values):
        values = values.detach().cpu().double().tolist()
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class DataSpec:
    """Data-derived state a model needs, fixed once the training split is known.

    classes: class names in label order. input_mean / input_std (F,): per-feature statistics of
    the training split (None: inputs are used as served, e.g. images normalised per image).
    class_weights (C,): loss weights (None: unweighted). class_counts (C,): training samples
    per class, whose frequencies are the class priors (logit adjustment, baselines).
    input_shape: one sample's shape without the batch dimension, None where the size varies:
    (F,) voxel rows, (C, H, W) images, (F, None, None, None) volumes of any size; its first
    entry sizes the net's first layer (`in_features` / `in_channels`). None: not recorded
    (checkpoints from before it; their net config carries the sizes).
    """

    classes: tuple[str, ...]
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    class_counts: tuple[int, ...] | None = field(default=None)
    input_shape: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.input_shape is not None:
            shape = tuple(None if d is None else int(d) for d in self.input_shape)
            if not shape or shape[0] is None or any(d is not None and d < 1 for d in shape):
                raise ValueError(
                    f"DataSpec: input_shape {list(self.input_shape)} needs a known first entry "
                    "(features or channels) and sizes >= 1"
                )
            object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        for name in ("input_mean", "input_std", "class_weights"):
            object.__setattr__(self, name, _floats(getattr(self, name)))
        if self.class_counts is not None:
            counts = self.class_counts
            if torch.is_tensor(counts):
                counts = counts.tolist()
            object.__setattr__(self, "class_counts", tuple(int(c) for c in counts))
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("DataSpec: give input_mean and input_std together, or neither")
        if self.input_mean is not None and len(self.input_mean) != len(self.input_std):
            raise ValueError("DataSpec: input_mean and input_std differ in length")
        for name in ("class_weights", "class_counts"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.classes):
                raise ValueError(
                    f"DataSpec: {name} has {len(values)} entries for {len(self.classes)} classes"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_inputs(self) -> int | None:
        """Width of dim 1 of an input batch: features of a voxel row, channels of an image."""
        return None if self.input_shape is None else self.input_shape[0]

    def tensor(self, name: str) -> torch.Tensor | None:
        """One of the numeric fields as a float32 tensor (None where the field is None)."""
        values = getattr(self, name)
        return None if values is None else torch.tensor(values, dtype=torch.float32)

    def priors(self) -> torch.Tensor | None:
        """Training class frequencies (C,) float32, None without class counts."""
        counts = self.tensor("class_counts")
        return None if counts is None else counts / counts.sum().clamp(min=1)

    def to_dict(self) -> dict:
        """Plain lists and strings: checkpoints stay loadable with torch.load(weights_only=True)."""
        return {
            "classes": list(self.classes),
            "input_mean": None if self.input_mean is None else list(self.input_mean),
            "input_std": None if self.input_std is None else list(self.input_std),
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "class_counts": None if self.class_counts is None else list(self.class_counts),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
        }

    @classmethod
    def from_dict(cls, values: Mapping, where: str = "checkpoint") -> DataSpec:
        """Inverse of `to_dict`; a malformed entry names the checkpoint."""
        try:
            return cls(
                classes=values["classes"],
                input_mean=values.get("input_mean"),
                input_std=values.get("input_std"),
                class_weights=values.get("class_weights"),
                class_counts=values.get("class_counts"),
                input_shape=values.get("input_shape"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"malformed data_spec entry: {err}",
                where,
                "use a checkpoint written by mrinet.train (it stores the data spec)",
            ) from err


def require_splits(ready: bool) -> None:
    """A DataModule's `data_spec()` reads its training split: before `setup()` that is an error."""
    if not ready:
        raise ConfigError(
            "data_spec() needs the splits: call setup() first",
            "data",
            "call datamodule.setup('fit') before datamodule.data_spec()",
        )


def class_counts(labels: torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """Samples per class (C,) int64 of integer labels (N,)."""
    return torch.bincount(labels.long(), minlength=len(classes))


class BatchGroup(list):
    """k consecutive (x, y) batches served as one loader item: the model runs one optimizer
    step per batch (grouped steps). A type of its own, so a plain DataLoader's [x, y] list is
    never mistaken for a group; batch sizes stay the loader's business."""
