"""Where a tissue task's subjects are and how one is read, shared by the voxel and the volume
DataModules (siblings that each hold one SubjectReader, not a subclass undoing its parent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mrinet.data.tissue.context import ContextSpec
from mrinet.data.tissue.subjects import Voxels, class_lookup, load_subjects, subject_voxels
from mrinet.errors import ConfigError, check_choice
from mrinet.io.layouts import get_layout
from mrinet.io.subjects import list_subjects
from mrinet.sim.dti_cache import ensure_synthetic_cohort

SOURCES = ("synthetic", "nifti", "dwi", "table")


@dataclass
class SubjectReader:
    """The subject settings of `configs/data/dti.yaml`: source and folders, features, classes,
    label map, label file and layout; `read` gives one subject as `subjects.subject_voxels`."""

    source: str = "synthetic"
    subjects_dir: str | None = None
    cache_dir: str = "data/dti_synthetic"
    synthetic: Mapping = field(default_factory=dict)
    features: Sequence[str] = ("T1w", "FA", "MD", "AD", "RD")
    classes: Sequence[str] = ("thalamus", "corpus_callosum", "cortical_wm")
    label_map: Mapping[str, Sequence[int]] = field(default_factory=dict)
    label_file: str = "aparc+aseg.nii.gz"
    resample_labels: bool = False
    layout: str = "flat"

    def __post_init__(self) -> None:
        check_choice(self.source, SOURCES, "data.source", "data source")
        self.layout = get_layout(self.layout).name
        self.features, self.classes = list(self.features), list(self.classes)
        self.label_map, self.synthetic = dict(self.label_map or {}), dict(self.synthetic or {})
        self.resample_labels = bool(self.resample_labels)

    @property
    def volume_source(self) -> str:
        """How subject folders are read: `dwi` fits tensors, otherwise maps are read (`nifti`)."""
        return "dwi" if self.source == "dwi" else "nifti"

    @property
    def where(self) -> str | None:
        """The folder errors about the subjects name."""
        return self.subjects_dir or self.cache_dir

    def root(self) -> Path:
        """The folder of subject folders (the simulated cohort is generated on first use)."""
        if self.source == "synthetic":
            return ensure_synthetic_cohort(self.cache_dir, self.synthetic)
        if not self.subjects_dir:
            raise ConfigError(
                f"data.source={self.source} needs a subjects directory",
                "data.subjects_dir",
                "set data.subjects_dir=DIR (one folder per subject)",
            )
        return Path(self.subjects_dir)

    def prepare(self) -> None:
        """Simulate the synthetic cohort once (Lightning's prepare_data)."""
        if self.source == "synthetic":
            ensure_synthetic_cohort(self.cache_dir, self.synthetic)

    def names(self, root: Path | None = None) -> list[str]:
        """The subject folders' names, in the order splits are drawn from."""
        return [f.name for f in list_subjects(root or self.root())]

    def read(self, subject_dir: Path, context: ContextSpec | None = None):
        """One subject folder: (x at the class voxels, their classes, the volumes)."""
        return subject_voxels(
            subject_dir,
            self.features,
            class_lookup(self.classes, self.label_map),
            self.label_file,
            self.volume_source,
            self.resample_labels,
            context,
            self.layout if self.source != "synthetic" else "flat",
        )

    def voxels(self, context: ContextSpec | None = None, root: Path | None = None) -> Voxels:
        """Every subject's class voxels (inputs with `context`), subject per voxel."""
        return load_subjects(
            root or self.root(),
            self.features,
            self.classes,
            self.label_map,
            self.label_file,
            self.volume_source,
            self.resample_labels,
            context,
            self.layout,
        )
