"""The `data.*` keys of configs/data/dti.yaml as one record, read by both tissue DataModules.

The voxel and the volume module take these keys as keyword arguments (configs and every
checkpoint give them by name, tests/fixtures/main_checkpoints); each builds its settings record
first, so a key means the same in both and is checked in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mrinet.data.checks import check_positive
from mrinet.data.splits import check_split_fractions
from mrinet.data.tissue.context import ContextSpec
from mrinet.data.tissue.reader import SubjectReader
from mrinet.errors import ConfigError


@dataclass
class TissueSettings:
    """configs/data/dti.yaml: subjects (source, folders, features, classes, label map and file,
    layout), table columns, split and seed, batches, class weights, the spatial context and
    the first stage of an auto-context run, mirroring."""

    source: str = "synthetic"
    subjects_dir: str | None = None
    table_path: str | None = None
    cache_dir: str = "data/dti_synthetic"
    features: Sequence[str] = ("T1w", "FA", "MD", "AD", "RD")
    classes: Sequence[str] = ("thalamus", "corpus_callosum", "cortical_wm")
    label_map: Mapping[str, Sequence[int]] | None = None
    label_file: str = "aparc+aseg.nii.gz"
    columns: Mapping[str, object] | None = None
    split: Sequence[float] = (0.6, 0.2, 0.2)
    batch_size: int = 1024
    eval_batch_size: int = 65536
    class_weights: bool = False
    drop_nonfinite: bool = False
    resample_labels: bool = False
    steps_per_batch: int = 1
    seed: int = 0
    synthetic: Mapping | None = None
    context: str | Sequence[str] | None = "none"
    patch_size: int = 3
    patch_dilation: int | Sequence[int] = 1
    mirror_train: bool = False
    layout: str = "flat"
    context_model: object = None

    def __post_init__(self) -> None:
        self.batch_size = check_positive("data.batch_size", self.batch_size, 1024)
        self.eval_batch_size = check_positive("data.eval_batch_size", self.eval_batch_size, 1024)
        self.split = list(check_split_fractions(self.split))
        self.columns = dict(self.columns or {})
        self.seed, self.steps_per_batch = int(self.seed), int(self.steps_per_batch)
        self.class_weights, self.drop_nonfinite = (
            bool(self.class_weights),
            bool(self.drop_nonfinite),
        )
        self.mirror_train = bool(self.mirror_train)

    def reader(self) -> SubjectReader:
        """The subject reader these settings describe (validates source and layout)."""
        return SubjectReader(
            self.source, self.subjects_dir, self.cache_dir, self.synthetic or {}, self.features,
            self.classes, self.label_map or {}, self.label_file, self.resample_labels, self.layout,
        )  # fmt: skip

    def context_spec(self) -> ContextSpec:
        """data.context, patch_size, patch_dilation, context_model as the record (reads nothing)."""
        return ContextSpec.from_config(
            self.context, self.patch_size, self.patch_dilation, self.context_model
        )

    @property
    def where(self) -> str:
        """The place errors about the voxels name: subjects folder, table or cache."""
        return self.subjects_dir or self.table_path or self.cache_dir


class ReadsSettings:
    """A DataModule whose `data.*` keys also read as its attributes (`dm.batch_size`,
    `dm.crop_size`), as they did before the settings record; its own attributes come first."""

    settings: TissueSettings

    def __getattr__(self, name: str):
        settings = self.__dict__.get("settings")  # absent while unpickling: no recursion
        if settings is not None and name in settings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass
class VolumeSettings(TissueSettings):
    """configs/data/dti_volumes.yaml: the voxel settings it inherits, plus the training crops
    (side in voxels, crops per epoch) and their augmentation (probability, rotation in degrees,
    relative scale)."""

    crop_size: int = 48
    crops_per_epoch: int = 32
    augment_prob: float = 0.0
    rotate_deg: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.crop_size = check_positive("data.crop_size", self.crop_size, 48)
        self.crops_per_epoch = check_positive("data.crops_per_epoch", self.crops_per_epoch, 32)
        prob, rotate, scale = float(self.augment_prob), float(self.rotate_deg), float(self.scale)
        if not 0.0 <= prob <= 1.0 or rotate < 0 or not 0 <= scale < 1:
            raise ConfigError(
                f"data.augment_prob={self.augment_prob}, data.rotate_deg={self.rotate_deg}, "
                f"data.scale={self.scale}: need 0 <= augment_prob <= 1, rotate_deg >= 0, "
                "0 <= scale < 1",
                "data.augment_prob",
                "e.g. data.augment_prob=0.5 data.rotate_deg=10 data.scale=0.1 (0: no augmentation)",
            )
        self.augment_prob, self.rotate_deg, self.scale = prob, rotate, scale

    @property
    def augment(self) -> dict[str, float]:
        """The crops' augmentation, as VolumeCrops takes it."""
        return {
            "augment_prob": self.augment_prob,
            "rotate_deg": self.rotate_deg,
            "scale": self.scale,
        }
