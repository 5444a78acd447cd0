"""DTI voxel classification data: subjects -> voxels [T1w, FA, MD, AD, RD] -> whole batches."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.batches import TensorBatches
from mrinet.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

DIFFUSIVITIES = ("MD", "AD", "RD")
SOURCES = ("synthetic", "nifti", "dwi", "table")
SPLITS = ("train", "val", "test")


@dataclass
class Voxels:
    """Voxel samples: features (N, F) float32, class index (N,) int64, subject id per voxel."""

    features: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray | None

    def take(self, mask: np.ndarray) -> Voxels:
        subjects = None if self.subjects is None else self.subjects[mask]
        return Voxels(self.features[mask], self.labels[mask], subjects)


def check_split_fractions(split: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions (three non-negative numbers summing to 1)."""
    if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(
            f"split fractions {list(split)} must be three non-negative numbers summing to 1",
            "data.split",
            "e.g. data.split=[0.6,0.2,0.2]",
        )
    return tuple(float(f) for f in split)


def split_sizes(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """Train/val/test counts for `n` units; a split with a positive fraction gets at least one."""
    fractions = check_split_fractions(split)
    n_val = max(round(fractions[1] * n), 1) if fractions[1] > 0 else 0
    n_test = max(round(fractions[2] * n), 1) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1 and fractions[0] > 0:
        raise ConfigError(
            f"{n} subject(s)/voxel(s) cannot fill train/val/test with fractions {list(split)}",
            "data.split",
            "add subjects or set a split fraction to 0 (e.g. data.split=[0.5,0.5,0])",
        )
    return n_train, n_val, n_test


def split_units(units: Sequence[str], split: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Assign whole subjects to train/val/test at random (seeded) by the split fractions."""
    units = sorted(units)
    order = [units[i] for i in np.random.default_rng(seed).permutation(len(units))]
    bounds = np.cumsum([0, *split_sizes(len(units), split)])
    return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}


def convert_diffusivity_units(
    maps: dict[str, np.ndarray], where: str, mask: np.ndarray | None = None
) -> bool:
    """Scale MD/AD/RD given in mm^2/s to um^2/ms in place; returns whether it converted."""
    present = [k for k in DIFFUSIVITIES if k in maps]
    if not present:
        return False
    values = np.concatenate([maps[k][mask] if mask is not None else maps[k].ravel() for k in present])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return False
    median = float(np.median(values))
    if median < 0.02:  # brain tissue: ~0.0003-0.003 mm^2/s, ~0.3-3 um^2/ms
        for k in present:
            maps[k] = maps[k] * 1000.0
        log.info("%s: diffusivities look like mm^2/s (median %.2g): converted to um^2/ms", where, median)
        return True
    if not 0.02 <= median <= 10.0:
        raise DataFormatError(
            f"implausible diffusivity scale: median MD/AD/RD {median:.3g}",
            where,
            "give MD/AD/RD in um^2/ms (tissue ~0.3-3) or mm^2/s (~0.0003-0.003)",
        )
    return False


def check_fa_range(fa: np.ndarray, where: str) -> None:
    """FA is a normalised variance: values outside [0, 1] mean a wrong map or scaling."""
    finite = fa[np.isfinite(fa)]
    if finite.size and (finite.min() < -1e-3 or finite.max() > 1.0 + 1e-3):
        raise DataFormatError(
            f"FA outside [0, 1] (min {finite.min():.3g}, max {finite.max():.3g})",
            where,
            "check that the FA map is not scaled (e.g. x1000) or swapped with another map",
        )


def class_lookup(classes: Sequence[str], label_map: Mapping[str, Sequence[int]]) -> dict[int, int]:
    """FreeSurfer code -> class index (order of `classes`)."""
    lookup: dict[int, int] = {}
    for index, name in enumerate(classes):
        if name not in label_map:
            raise ConfigError(
                f"class {name!r} has no entry in the label map (known: {sorted(label_map)})",
                "data.label_map",
                f"add data.label_map.{name}=[codes] or remove it from data.classes",
            )
        for code in label_map[name]:
            if int(code) in lookup:
                raise ConfigError(
                    f"label code {code} is mapped to two classes",
                    "data.label_map",
                    "give every FreeSurfer code to one class only",
                )
            lookup[int(code)] = index
    return lookup


def read_subject(
    subject_dir: str | Path, features: Sequence[str], source: str = "nifti"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One subject's feature maps ({name: 3D float32}, MD/AD/RD in um^2/ms) and their affine.

    `nifti` reads the maps (or dtifit outputs); `dwi` fits tensors to the raw DWI itself.
    """
    if source == "dwi":
        from mrinet.data.dwi_features import dwi_feature_maps

        maps, affine = dwi_feature_maps(subject_dir)
        missing = [name for name in features if name not in maps]
        if missing:
            raise ConfigError(
                f"features {missing} cannot be derived from raw DWI (available: {sorted(maps)})",
                "data.features",
                "use features among T1w, FA, MD, AD, RD with data.source=dwi",
            )
        return {name: maps[name] for name in features}, affine
    from mrinet.io.subjects import read_feature_maps

    maps, affine, _ = read_feature_maps(subject_dir, features)
    return maps, affine


def read_labels(subject_dir: Path, label_file: str, shape, affine, resample: bool = False) -> np.ndarray:
    """The subject's label volume on the feature grid; another grid is resampled (nearest
    neighbour) only when `resample` is set, else it is an error that names the fix."""
    from mrinet.io.subjects import read_label_volume

    if resample:
        from mrinet.io.resample import load_labels_on_grid

        return load_labels_on_grid(subject_dir / label_file, shape, affine, resample=True)
    return read_label_volume(subject_dir / label_file, shape, affine)


def subject_voxels(
    subject_dir: Path,
    features: Sequence[str],
    lookup: Mapping[int, int],
    label_file: str,
    source: str = "nifti",
    resample_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Class voxels of one subject -> (features (N, F), class index (N,), volume info)."""
    maps, affine = read_subject(subject_dir, features, source)
    shape = next(iter(maps.values())).shape
    labels = read_labels(subject_dir, label_file, shape, affine, resample_labels)
    codes = np.array(sorted(lookup), dtype=np.int64)
    mask = np.isin(labels, codes)
    convert_diffusivity_units(maps, str(subject_dir), mask if mask.any() else None)
    if "FA" in maps:
        check_fa_range(maps["FA"][mask], str(subject_dir / "FA"))
    x = np.stack([maps[name][mask] for name in features], axis=1).astype(np.float32)
    table = np.full(int(codes.max()) + 1 if codes.size else 1, -1, dtype=np.int64)
    table[codes] = [lookup[int(c)] for c in codes]
    classes = np.where(mask, table[np.clip(labels, 0, len(table) - 1)], -1)
    return x, classes[mask], {"maps": maps, "affine": affine, "classes": classes}


def load_subjects(
    subjects_dir: str | Path,
    features: Sequence[str],
    classes: Sequence[str],
    label_map: Mapping[str, Sequence[int]],
    label_file: str = "aparc+aseg.nii.gz",
    source: str = "nifti",
    resample_labels: bool = False,
) -> Voxels:
    """Read every subject folder and keep the voxels whose label code maps to a class."""
    from mrinet.io.subjects import list_subjects

    import pandas as pd

    lookup = class_lookup(classes, label_map)
    folders = list_subjects(subjects_dir)
    parts, codes, labels_all = [], [], []
    for index, subject_dir in enumerate(folders):
        x, y, _ = subject_voxels(subject_dir, features, lookup, label_file, source, resample_labels)
        parts.append(x)
        labels_all.append(y)
        codes.append(np.full(len(y), index, dtype=np.int32))
    # subject per voxel as a Categorical: integer codes, not a million Python strings
    subjects = pd.Categorical.from_codes(np.concatenate(codes), categories=[f.name for f in folders])
    return Voxels(np.concatenate(parts), np.concatenate(labels_all), subjects)


def load_table(
    table_path: str | Path,
    features: Sequence[str],
    classes: Sequence[str],
    label_column: str,
    subject_column: str | None,
    drop_nonfinite: bool = False,
) -> Voxels:
    """Read a voxel table; labels are the lecture's 1-based class numbers or class names."""
    from mrinet.io.tables import read_voxel_table

    x, raw, subjects = read_voxel_table(table_path, features, label_column, subject_column)
    labels = labels_to_indices(raw, classes, f"{table_path} (column {label_column!r})")
    nonfinite = ~np.isfinite(x)
    if nonfinite.any():
        counts = {features[j]: int(nonfinite[:, j].sum()) for j in range(len(features)) if nonfinite[:, j].any()}
        if not drop_nonfinite:
            raise DataFormatError(
                f"NaN/inf feature values per column: {counts}",
                table_path,
                "clean the table, or set data.drop_nonfinite=true to drop those rows",
            )
        keep = ~nonfinite.any(axis=1)
        log.warning("%s: dropped %d row(s) with NaN/inf features %s", table_path, int((~keep).sum()), counts)
        x, labels = x[keep], labels[keep]
        subjects = None if subjects is None else subjects[keep]
    maps = {name: x[:, j] for j, name in enumerate(features)}
    if convert_diffusivity_units(maps, str(table_path)):
        x = np.stack([maps[name] for name in features], axis=1).astype(np.float32)
    if "FA" in maps:
        check_fa_range(maps["FA"], f"{table_path} (column 'FA')")
    return Voxels(x, labels, subjects)


def labels_to_indices(raw: np.ndarray, classes: Sequence[str], where: str) -> np.ndarray:
    """1-based class numbers (the lecture's 1, 2, 3) or class names -> 0-based class indices."""
    import pandas as pd

    numeric = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    if np.all(np.isfinite(numeric)):
        if not np.array_equal(numeric, np.round(numeric)) or numeric.min() < 1 or numeric.max() > len(classes):
            bad = sorted(set(numeric[(numeric < 1) | (numeric > len(classes)) | (numeric != np.round(numeric))]))
            raise DataFormatError(
                f"label values {bad[:5]} are not class numbers 1..{len(classes)}",
                where,
                f"use 1..{len(classes)} in the order of data.classes {list(classes)}, or class names",
            )
        return numeric.astype(np.int64) - 1
    codes, names = pd.factorize(pd.Series(raw).astype(str))
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(name for name in names if name not in index)
    if unknown:
        raise DataFormatError(
            f"unknown class name(s) {unknown[:5]}",
            where,
            f"labels must be one of {list(classes)} or 1..{len(classes)}",
        )
    return np.asarray([index[name] for name in names], dtype=np.int64)[codes]


SIMULATOR_VERSION = "dwi-1"  # bump when the simulator's output changes: invalidates caches


def synthetic_cohort_dir(cache_dir: str | Path, params: Mapping) -> Path:
    """Where the simulated cohort for these settings lives (keyed by all simulator parameters)."""
    from mrinet.sim.dti_dataset import cohort_params

    settings = dict(params)
    subjects, seed = settings.pop("subjects", 8), settings.pop("seed", 0)
    preset = settings.pop("preset", "literature")
    full = cohort_params(preset, **settings)
    key = json.dumps(
        {"version": SIMULATOR_VERSION, "subjects": subjects, "seed": seed, "preset": preset, "params": full},
        sort_keys=True,
    )
    return Path(cache_dir) / f"{preset}-{subjects}subj-seed{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def ensure_synthetic_cohort(cache_dir: str | Path, params: Mapping) -> Path:
    """Simulate the cohort on first use; each subject folder is written whole (temp + rename),
    so an interrupted generation resumes with the missing subjects only."""
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    target = synthetic_cohort_dir(cache_dir, params)
    settings = dict(params)
    expected = int(settings.get("subjects", 8))
    existing = [p for p in target.glob("sub-*") if p.is_dir()] if target.is_dir() else []
    if len(existing) >= expected:
        log.info("synthetic DTI cohort: using cached %s", target)
        return target
    log.info("synthetic DTI cohort: simulating %d subject(s) into %s (once; cached)", expected - len(existing), target)
    simulate_dti_cohort(target, **settings)
    return target


class DTIDataModule(pl.LightningDataModule):
    """Voxels from synthetic, NIfTI or table sources; split by subject; served as whole batches.

    Features are served raw; `input_scaling` (mean, std of the training split) is stored in the
    model so that eval and predict on new data use exactly the training scaling.
    """

    def __init__(
        self,
        source: str = "synthetic",
        subjects_dir: str | None = None,
        table_path: str | None = None,
        cache_dir: str = "data/dti_synthetic",
        features: Sequence[str] = ("T1w", "FA", "MD", "AD", "RD"),
        classes: Sequence[str] = ("thalamus", "corpus_callosum", "cortical_wm"),
        label_map: Mapping[str, Sequence[int]] | None = None,
        label_file: str = "aparc+aseg.nii.gz",
        columns: Mapping[str, object] | None = None,
        split: Sequence[float] = (0.6, 0.2, 0.2),
        batch_size: int = 1024,
        eval_batch_size: int = 65536,
        class_weights: bool = False,
        drop_nonfinite: bool = False,
        resample_labels: bool = False,
        steps_per_batch: int = 1,
        seed: int = 0,
        synthetic: Mapping | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"unknown data source {source!r}", "data.source", f"use one of {SOURCES}")
        for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
            if int(value) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value}", key, f"e.g. {key}=1024")
        check_split_fractions(split)
        self.source, self.subjects_dir, self.table_path = source, subjects_dir, table_path
        self.cache_dir = cache_dir
        self.features, self.classes = list(features), list(classes)
        self.label_map = dict(label_map or {})
        self.label_file = label_file
        self.columns = dict(columns or {})
        self.split, self.seed = list(split), int(seed)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.use_class_weights, self.drop_nonfinite = bool(class_weights), bool(drop_nonfinite)
        self.synthetic = dict(synthetic or {})
        self.resample_labels = bool(resample_labels)
        self.steps_per_batch = int(steps_per_batch)  # = model.steps_per_batch (grouped steps)
        self.data: dict[str, dict[str, torch.Tensor]] = {}
        self.split_units: dict[str, list[str]] = {}
        self._examples: dict[str, dict] = {}

    # ---- reading -------------------------------------------------------------------------
    def load_voxels(self) -> Voxels:
        """All voxels of the configured source (before splitting)."""
        if self.source == "table":
            if not self.table_path:
                raise ConfigError("data.source=table needs a table", "data.table_path", "set data.table_path=FILE")
            return load_table(
                self.table_path,
                self.features,
                self.classes,
                str(self.columns.get("label", "label")),
                self.columns.get("subject", "subject"),
                self.drop_nonfinite,
            )
        if self.source == "synthetic":
            return self._cached_synthetic_voxels()
        return load_subjects(
            self.subjects_root(),
            self.features,
            self.classes,
            self.label_map,
            self.label_file,
            self.volume_source,
            self.resample_labels,
        )

    def _cached_synthetic_voxels(self) -> Voxels:
        """The simulated cohort's class voxels, extracted once into an uncompressed .npz beside
        it (keyed by features, classes and label map): ~20 ms instead of ~1 s of gzip NIfTI reads
        at every start. Only for the cohort mrinet generated; real data folders stay untouched."""
        import pandas as pd

        from mrinet.io.atomic import atomic_file

        root = self.subjects_root()
        key = json.dumps([self.features, self.classes, self.label_map, self.label_file], sort_keys=True)
        cache = root / f".voxels-{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"
        if cache.is_file():
            with np.load(cache) as saved:
                subjects = pd.Categorical.from_codes(saved["codes"], categories=saved["names"].tolist())
                return Voxels(saved["features"], saved["labels"], subjects)
        voxels = load_subjects(root, self.features, self.classes, self.label_map, self.label_file)
        with atomic_file(cache) as tmp, open(tmp, "wb") as handle:
            names = np.asarray(voxels.subjects.categories, dtype=str)
            np.savez(handle, features=voxels.features, labels=voxels.labels, codes=voxels.subjects.codes, names=names)
        return voxels

    @property
    def volume_source(self) -> str:
        """How subject folders are read: `dwi` fits tensors, otherwise maps are read (`nifti`)."""
        return "dwi" if self.source == "dwi" else "nifti"

    def subjects_root(self) -> Path:
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

    def example_subject(self, split: str = "val") -> dict | None:
        """A whole subject of `split` as volumes, for tissue-map figures (None for tables)."""
        if self.source == "table" or not self.split_units.get(split):
            return None
        if split not in self._examples:
            subject_dir = self.subjects_root() / self.split_units[split][0]
            lookup = class_lookup(self.classes, self.label_map)
            _, _, volume = subject_voxels(
                subject_dir, self.features, lookup, self.label_file, self.volume_source, self.resample_labels
            )
            self._examples[split] = {"name": subject_dir.name, **volume}
        return self._examples[split]

    def prepare_data(self) -> None:
        if self.source == "synthetic":
            ensure_synthetic_cohort(self.cache_dir, self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        voxels = self.load_voxels()
        if voxels.subjects is not None:
            import pandas as pd

            codes, names = pd.factorize(voxels.subjects)  # strings -> ints once, not per split
            self.split_units = split_units(list(names), self.split, self.seed)
            split_of = {name: i for i, split in enumerate(SPLITS) for name in self.split_units[split]}
            voxel_split = np.asarray([split_of[name] for name in names], dtype=np.int8)[codes]
            parts = {split: voxels.take(voxel_split == i) for i, split in enumerate(SPLITS)}
        else:
            log.warning("no subject column: splitting voxels at random (voxels of one subject may share splits)")
            order = np.random.default_rng(self.seed).permutation(len(voxels.labels))
            bounds = np.cumsum([0, *split_sizes(len(order), self.split)])
            parts = {s: voxels.take(np.sort(order[bounds[i] : bounds[i + 1]])) for i, s in enumerate(SPLITS)}
        for name, fraction in zip(SPLITS, self.split):
            if fraction == 0:
                continue
            counts = np.bincount(parts[name].labels, minlength=len(self.classes))
            empty = [self.classes[i] for i in np.flatnonzero(counts == 0)]
            if empty:
                raise DataFormatError(
                    f"class(es) {empty} have no voxel in the {name} split (counts {counts.tolist()})",
                    self.subjects_dir or self.table_path or self.cache_dir,
                    "check data.label_map codes against the label volume, or add subjects",
                )
        self.data = {
            name: {
                "x": torch.from_numpy(np.ascontiguousarray(part.features)),
                "y": torch.from_numpy(part.labels),
            }
            for name, part in parts.items()
        }
        log.info(
            "DTI voxels per split: %s",
            {k: int(len(v["y"])) for k, v in self.data.items()},
        )

    # ---- what the model needs from the data ------------------------------------------------
    @property
    def input_scaling(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of each feature over the training split (float32, (F,))."""
        x = self.data["train"]["x"].double()
        mean, std = x.mean(0), x.std(0)
        return mean.float(), torch.clamp(std, min=1e-6).float()

    @property
    def class_weights(self) -> torch.Tensor | None:
        """Inverse-frequency class weights from the training split, if enabled (mean 1)."""
        if not self.use_class_weights:
            return None
        counts = torch.bincount(self.data["train"]["y"], minlength=len(self.classes)).double()
        weights = counts.sum() / (len(self.classes) * counts)
        return weights.float()

    # ---- loaders ---------------------------------------------------------------------------
    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def _loader(self, name: str, train: bool) -> TensorBatches:
        part = self.data[name]
        trainer = getattr(self, "trainer", None)
        group = self.steps_per_batch if trainer is None or trainer.world_size == 1 else 1
        return TensorBatches(
            part["x"],
            part["y"],
            batch_size=self.batch_size * group if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            epoch_fn=self._current_epoch,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", train=False)
