"""Reconstruction-quality images: recon/<tag>/<volume>.h5 -> labelled 2-D images, split by volume.

Each class is one or more reconstruction tags (binary by default: the fully sampled `reference`
reconstructed by the same pipeline at R=1, against `pics_R4`). Images are centre-cropped and
normalised per image (image_transforms), so a class cannot be told from a global intensity
scale. Datasets that fit are preloaded into one tensor and served by slicing it (the default,
image_batches.ImageBatches); larger ones are read lazily from HDF5 (image_batches.HDF5Images),
with DataLoader workers writing into shared-memory buffers (shared_batches.SharedBatches).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.contract import DataSpec, class_counts, require_splits
from mrinet.data.loading.batches import pin_for
from mrinet.data.recon_quality.batches import EpochBatches, HDF5Images, ImageBatches, InMemoryImages
from mrinet.data.recon_quality.index import (
    ImageIndex,
    build_index,
    discover_volumes,
    preload_images,
)
from mrinet.data.recon_quality.shared_batches import SharedBatches
from mrinet.data.recon_quality.transforms import FLIPS, NORMALIZATIONS
from mrinet.data.splits import SPLITS, check_split_fractions, split_units
from mrinet.errors import ConfigError, check_choice
from mrinet.io.recon_files import slice_count
from mrinet.sim.recon_cache import ensure_synthetic_recon

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "files")


def physical_memory_gb() -> float:
    """Installed RAM in GB (inf where the OS does not say): caps what `preload="auto"` holds."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (AttributeError, ValueError, OSError):
        return float("inf")


class ReconQualityDataModule(pl.LightningDataModule):
    """Reference vs accelerated reconstructions (or several tags/R) as 2-D image classification.

    `data_spec()` gives the model its class names. Images are (B, 1, H, W) float32, per-image
    normalised; labels (B,) int64 in the order of `classes`.
    """

    def __init__(
        self,
        source: str = "synthetic",
        recon_dir: str | None = None,
        cache_dir: str = "data/recon_synthetic",
        classes: Sequence[str] = ("reference", "accelerated"),
        class_tags: Mapping[str, Sequence[str]] | None = None,
        crop: Sequence[int] = (320, 320),
        normalization: str = "percentile",
        percentile: float = 99.0,
        flips: Sequence[str] = ("horizontal", "vertical"),
        split: Sequence[float] = (0.6, 0.2, 0.2),
        batch_size: int = 16,
        eval_batch_size: int = 64,
        preload: bool | str = "auto",
        preload_max_gb: float = 4.0,
        num_workers: int = 0,
        seed: int = 0,
        synthetic: Mapping | None = None,
    ) -> None:
        super().__init__()
        check_choice(source, SOURCES, "data.source", "data source")
        check_choice(normalization, NORMALIZATIONS, "data.normalization")
        unknown = [f for f in flips if f not in FLIPS]
        if unknown:
            raise ConfigError(
                f"unknown flips {unknown}", "data.flips", f"use some of {list(FLIPS)}"
            )
        class_tags = {str(k): [str(t) for t in v] for k, v in (class_tags or {}).items()} or {
            "reference": ["reference"],
            "accelerated": ["pics_R4"],
        }
        missing = [c for c in classes if not class_tags.get(c)]
        if missing:
            raise ConfigError(
                f"class(es) {missing} have no reconstruction tags",
                "data.class_tags",
                "map every class in data.classes to a list of tags, e.g. {accelerated: [pics_R4]}",
            )
        tags = [t for c in classes for t in class_tags[c]]
        if len(set(tags)) != len(tags):
            raise ConfigError(
                f"a tag belongs to two classes: {tags}", "data.class_tags", "give each tag once"
            )
        if len(crop) != 2 or min(int(c) for c in crop) < 1:
            raise ConfigError(f"data.crop={list(crop)}", "data.crop", "give [height, width]")
        check_split_fractions(split)
        self.source, self.recon_dir, self.cache_dir = source, recon_dir, cache_dir
        self.classes = [str(c) for c in classes]
        self.class_tags = {c: class_tags[c] for c in self.classes}
        self.crop = (int(crop[0]), int(crop[1]))
        self.normalization, self.percentile = normalization, float(percentile)
        self.flips = tuple(flips)
        self.split, self.seed = list(split), int(seed)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.preload, self.preload_max_gb = preload, float(preload_max_gb)
        self.num_workers = int(num_workers)
        self.synthetic = dict(synthetic or {})
        self.indexes: dict[str, ImageIndex] = {}
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self.split_units: dict[str, list[str]] = {}

    # ---- reading -------------------------------------------------------------------------
    def resolve_recon_dir(self) -> Path:
        """The folder of <tag>/<volume>.h5 files (simulated and reconstructed on first use)."""
        if self.source == "synthetic":
            return ensure_synthetic_recon(self.cache_dir, self.synthetic)
        if not self.recon_dir:
            raise ConfigError(
                "data.source=files needs a reconstruction directory",
                "data.recon_dir",
                "set data.recon_dir=DIR (holding <tag>/<volume>.h5)",
            )
        return Path(self.recon_dir)

    def prepare_data(self) -> None:
        if self.source == "synthetic":
            ensure_synthetic_recon(self.cache_dir, self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        recon_dir = self.resolve_recon_dir()
        per_tag = discover_volumes(recon_dir, self.class_tags)
        volumes = sorted(next(iter(per_tag.values())))
        self.split_units = split_units(volumes, self.split, self.seed)
        counts = {p: slice_count(p) for files in per_tag.values() for p in files.values()}
        for name, fraction in zip(SPLITS, self.split):
            if fraction > 0 and not self.split_units[name]:
                raise ConfigError(
                    f"the {name} split has no volume ({len(volumes)} volumes, split {self.split})",
                    "data.split",
                    "add volumes or set that split's fraction to 0",
                )
            self.indexes[name] = build_index(
                per_tag, self.class_tags, self.classes, self.split_units[name], counts
            )
        n_images = sum(len(i) for i in self.indexes.values())
        gigabytes = n_images * self.crop[0] * self.crop[1] * 4 / 1e9
        # training also holds the epoch's permuted copy of its split
        needed = gigabytes * (1 + len(self.indexes["train"]) / max(n_images, 1))
        preload = self.preload is True or (
            self.preload == "auto"
            and needed <= min(self.preload_max_gb, 0.5 * physical_memory_gb())
        )
        for name, index in self.indexes.items():
            flips = self.flips if name == "train" else ()
            if preload:
                images = preload_images(index, self.crop, self.normalization, self.percentile)
                self.datasets[name] = InMemoryImages(images, torch.from_numpy(index.labels), flips)
            else:
                self.datasets[name] = HDF5Images(
                    index, self.crop, self.normalization, self.percentile, flips
                )
        log.info(
            "recon-quality images per split: %s (%s, %.2f GB, classes %s)",
            {k: len(v) for k, v in self.indexes.items()},
            "preloaded" if preload else "read lazily",
            gigabytes,
            self.classes,
        )

    def data_spec(self) -> DataSpec:
        """The model/data contract after setup: class names and training class counts (images
        are normalised per image, so there is no input scaling to carry)."""
        require_splits("train" in self.indexes)
        labels = torch.from_numpy(self.indexes["train"].labels)
        return DataSpec(
            classes=self.classes,
            class_counts=class_counts(labels, self.classes),
            input_shape=(1, *self.crop),
        )

    @property
    def preloaded(self) -> bool:
        """Whether the images are held in RAM (else read from HDF5 per batch)."""
        return isinstance(self.datasets.get("train"), InMemoryImages)

    def split_images(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 1, H, W) and labels (N,) of a split, normalised, never flipped."""
        dataset = self.datasets[name]
        if isinstance(dataset, InMemoryImages):
            return dataset.images, dataset.labels
        images = torch.empty(len(dataset), 1, *self.crop)
        for start in range(0, len(dataset), 256):  # chunks: the read scratch stays small
            stop = min(start + 256, len(dataset))
            dataset.read(np.arange(start, stop), out=images[start:stop])
        return images, torch.from_numpy(dataset.index.labels)

    # ---- loaders ---------------------------------------------------------------------------
    def _loader(self, name: str, train: bool) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        dataset = self.datasets[name]
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = EpochBatches(len(dataset), batch_size, shuffle=train, seed=self.seed)
        if isinstance(dataset, InMemoryImages):
            # slicing RAM: workers would only add copies
            return ImageBatches(dataset, sampler, pin_for(getattr(self, "trainer", None)))
        if self.num_workers > 0:
            return SharedBatches(dataset, sampler, self.num_workers)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None)

    def train_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("val", train=False)

    def test_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("test", train=False)
