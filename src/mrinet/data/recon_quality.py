"""Reconstruction-quality images: recon/<tag>/<volume>.h5 -> labelled 2-D images, split by volume.

Each class is one or more reconstruction tags (binary by default: the fully sampled `reference`
reconstructed by the same pipeline at R=1, against `pics_R4`). Images are centre-cropped and
normalised per image, so a class cannot be told from a global intensity scale. Batches are
whole index lists (no per-sample collate); small datasets are preloaded into RAM, large ones
read lazily from HDF5 files that each DataLoader worker opens once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.dti import SPLITS, check_split_fractions, split_units
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "files")
NORMALIZATIONS = ("percentile", "meanstd", "none")
FLIPS = {"horizontal": -1, "vertical": -2}
RECON_DATASET = "reconstruction"
PERCENTILE_PIXELS = 1 << 16  # larger images: percentile estimated on a regular subgrid


# ---- per-image transforms (batched, torch) --------------------------------------------------
def center_crop_box(shape: Sequence[int], crop: Sequence[int], where: str) -> tuple[slice, slice]:
    """Row and column slices of the centred `crop` window of an (H, W) image (fastMRI rounding)."""
    height, width = int(shape[-2]), int(shape[-1])
    ch, cw = int(crop[0]), int(crop[1])
    if ch > height or cw > width:
        raise DataFormatError(
            f"images are {height}x{width}, smaller than the crop {ch}x{cw}",
            where,
            f"set data.crop=[{min(ch, height)},{min(cw, width)}] or reconstruct larger images",
        )
    top, left = (height - ch) // 2, (width - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def normalize_images(x: torch.Tensor, method: str = "percentile", percentile: float = 99.0):
    """Per-image intensity normalisation of (B, ..., H, W) magnitude images (float32).

    `percentile` (default) divides each image by its `percentile`-th intensity: zero stays zero
    (background stays background), the tissue lands near [0, 1] whatever the scanner or solver
    scaling, and unlike the maximum one bright pixel cannot set the scale. `meanstd` subtracts
    the mean and divides by the std (depends on how much background the image holds).
    """
    if method == "none" or x.numel() == 0:
        return x
    flat = x.reshape(x.shape[0], -1)
    if method == "percentile":
        sample = x
        while sample.shape[-1] * sample.shape[-2] > PERCENTILE_PIXELS:
            sample = sample[..., ::2, ::2]  # an estimate from 1/4 of the pixels is plenty
        scale = row_percentile(sample.reshape(x.shape[0], -1), percentile)
        scale = torch.where(scale > 0, scale, flat.abs().amax(1)).clamp(min=1e-12)
        return x / scale.view(-1, *([1] * (x.ndim - 1)))
    if method == "meanstd":
        mean, std = flat.mean(1), flat.std(1).clamp(min=1e-12)
        shape = (-1, *([1] * (x.ndim - 1)))
        return (x - mean.view(shape)) / std.view(shape)
    raise ConfigError(
        f"unknown normalization {method!r}", "data.normalization", f"use one of {NORMALIZATIONS}"
    )


def row_percentile(flat: torch.Tensor, percentile: float) -> torch.Tensor:
    """Percentile of each row of (B, N), linearly interpolated like numpy.percentile.

    numpy's partition (introselect) was 5-10x faster here than torch.kthvalue/topk/quantile.
    """
    position = percentile / 100.0 * (flat.shape[1] - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, flat.shape[1] - 1)
    part = np.partition(flat.detach().cpu().numpy(), [lower, upper], axis=1)
    low, high = part[:, lower].astype(np.float64), part[:, upper].astype(np.float64)
    value = low + (position - lower) * (high - low)
    return torch.from_numpy(value).to(device=flat.device, dtype=flat.dtype)


def random_flips(x: torch.Tensor, flips: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right / up-down with probability 1/2 each, in place.

    Flips keep the phase-encode direction of 1-D undersampling artifacts (a transpose would not).
    Only the chosen images are copied (a batch-wide flip + select cost 2.5x more memory traffic).
    """
    chosen = [(FLIPS[name], torch.rand(x.shape[0], generator=generator) < 0.5) for name in flips]
    for i in range(x.shape[0]):
        dims = [dim for dim, mask in chosen if mask[i]]
        if dims:
            x[i] = x[i].flip(dims)
    return x


# ---- index of images ------------------------------------------------------------------------
@dataclass
class ImageIndex:
    """Images of one split: file per (tag, volume), and per image its file, slice, label, volume."""

    files: list[Path]
    file_index: np.ndarray  # (N,) int64 into `files`
    slice_index: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64 class index
    volumes: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.labels)


def discover_volumes(
    recon_dir: Path, class_tags: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Path]]:
    """tag -> {volume: file} for every configured tag; only volumes present under every tag."""
    recon_dir = Path(recon_dir)
    if not recon_dir.is_dir():
        raise DataNotFoundError(
            "reconstruction directory not found",
            recon_dir,
            "set data.recon_dir to the folder holding <tag>/<volume>.h5 (scripts/reconstruct.py --out)",
        )
    available = sorted(p.name for p in recon_dir.iterdir() if p.is_dir())
    per_tag: dict[str, dict[str, Path]] = {}
    for tags in class_tags.values():
        for tag in tags:
            folder = recon_dir / tag
            files = {p.stem: p for p in sorted(folder.glob("*.h5"))} if folder.is_dir() else {}
            if not files:
                raise DataNotFoundError(
                    f"no reconstructions for tag {tag!r} (tags found: {available})",
                    folder,
                    "reconstruct with that tag or change data.class_tags",
                )
            per_tag[tag] = files
    common = set.intersection(*(set(files) for files in per_tag.values()))
    for tag, files in per_tag.items():
        missing = sorted(set(files) - common)
        if missing:
            log.warning("tag %s: volumes %s lack other tags and are left out", tag, missing[:5])
    if not common:
        raise DataFormatError(
            "no volume has a reconstruction under every configured tag",
            recon_dir,
            "reconstruct the same volumes for every tag in data.class_tags",
        )
    return {tag: {v: files[v] for v in sorted(common)} for tag, files in per_tag.items()}


def build_index(
    per_tag: Mapping[str, Mapping[str, Path]],
    class_tags: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    volumes: Sequence[str],
    slice_counts: Mapping[Path, int],
) -> ImageIndex:
    """All slices of `volumes` under every tag of every class, labelled by class order."""
    files: list[Path] = []
    file_index, slice_index, labels, vols = [], [], [], []
    for label, name in enumerate(classes):
        for tag in class_tags[name]:
            for volume in volumes:
                path = per_tag[tag][volume]
                n = slice_counts[path]
                file_index.append(np.full(n, len(files)))
                files.append(path)
                slice_index.append(np.arange(n))
                labels.append(np.full(n, label))
                vols.append(np.full(n, volume, dtype=object))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return ImageIndex(
        files,
        cat(file_index).astype(np.int64),
        cat(slice_index).astype(np.int64),
        cat(labels).astype(np.int64),
        cat(vols).astype(str),
    )


# ---- datasets that serve whole batches ---------------------------------------------------------
class EpochBatches(torch.utils.data.Sampler):
    """Yields (indices, flip_seed) per batch; reshuffled per epoch (Lightning calls set_epoch).

    Runs in the main process, so workers only read: each gets whole index lists. Under DDP each
    rank takes an equal, disjoint share.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = int(n), int(batch_size), shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> torch.Tensor:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        if world > 1:
            per_rank = self.n // world if self.shuffle else -(-self.n // world)
            order = order[rank::world][:per_rank]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        order = self._order()
        for i, start in enumerate(range(0, len(order), self.batch_size)):
            flip_seed = (self.seed * 1_000_003 + self.epoch) * 100_019 + i
            yield order[start : start + self.batch_size], flip_seed

    def __len__(self) -> int:
        return -(-len(self._order()) // self.batch_size)


class InMemoryImages(torch.utils.data.Dataset):
    """Preloaded images (N, 1, H, W) float32 and labels (N,); item = one whole batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flips: Sequence[str] = ()):
        self.images, self.labels, self.flips = images, labels, tuple(flips)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices, flip_seed = item
        x = self.images[indices]
        if self.flips:
            x = random_flips(x, self.flips, torch.Generator().manual_seed(int(flip_seed)))
        return x, self.labels[indices]


class HDF5Images(torch.utils.data.Dataset):
    """Images read on demand from reconstruction files, each opened once per process (worker).

    Per batch, the slices of one file are read in a single HDF5 call (sorted index list, crop
    window only), then normalised and flipped like the preloaded images.
    """

    def __init__(
        self,
        index: ImageIndex,
        crop: Sequence[int],
        normalization: str,
        percentile: float,
        flips: Sequence[str] = (),
    ) -> None:
        self.index, self.crop = index, tuple(int(c) for c in crop)
        self.normalization, self.percentile, self.flips = normalization, percentile, tuple(flips)
        self._handles: dict[int, object] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}  # open files never cross a process boundary
        return state

    def __len__(self) -> int:
        return len(self.index)

    def _dataset(self, file_number: int):
        if file_number not in self._handles:
            self._handles[file_number] = open_reconstruction(self.index.files[file_number])
        return self._handles[file_number]

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Cropped, normalised images (len(indices), 1, H, W) in the order of `indices`."""
        out = np.empty((len(indices), *self.crop), dtype=np.float32)
        files = self.index.file_index[indices]
        for file_number in np.unique(files):
            positions = np.flatnonzero(files == file_number)
            slices = self.index.slice_index[indices[positions]]
            unique, inverse = np.unique(slices, return_inverse=True)
            dataset = self._dataset(int(file_number))
            rows, cols = center_crop_box(
                dataset.shape, self.crop, str(self.index.files[file_number])
            )
            block = dataset[unique.tolist(), rows, cols]
            out[positions] = np.abs(block[inverse]) if np.iscomplexobj(block) else block[inverse]
        x = torch.from_numpy(out).unsqueeze(1)
        return normalize_images(x, self.normalization, self.percentile)

    def __getitem__(self, item: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices, flip_seed = item
        indices = np.asarray(indices, dtype=np.int64)
        x = self.read(indices)
        if self.flips:
            x = random_flips(x, self.flips, torch.Generator().manual_seed(int(flip_seed)))
        return x, torch.from_numpy(self.index.labels[indices])


def preload_images(
    index: ImageIndex, crop: Sequence[int], normalization: str, percentile: float
) -> torch.Tensor:
    """Every image of `index`, cropped and normalised, in RAM: (N, 1, H, W) float32."""
    from mrinet.io.fastmri import read_reconstruction

    out = torch.empty(len(index), 1, int(crop[0]), int(crop[1]))
    for file_number, path in enumerate(index.files):
        positions = np.flatnonzero(index.file_index == file_number)
        if not len(positions):
            continue
        images = read_reconstruction(path).reconstruction
        rows, cols = center_crop_box(images.shape, crop, str(path))
        block = images[index.slice_index[positions], rows, cols]
        out[torch.from_numpy(positions), 0] = torch.from_numpy(np.ascontiguousarray(block))
    return normalize_images(out, normalization, percentile)


def open_reconstruction(path: str | Path):
    """The `reconstruction` dataset (slices, H, W) of a file, left open for slice reads.

    mrinet.io.fastmri.read_reconstruction reads and validates whole files (used to preload);
    lazy loading needs the open dataset instead, to read a few slices per batch.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(
            f"cannot open HDF5 file ({err})", path, "re-create the file"
        ) from None
    if RECON_DATASET not in handle or handle[RECON_DATASET].ndim != 3:
        keys = list(handle)
        handle.close()
        raise DataFormatError(
            f"no 3-D {RECON_DATASET!r} dataset (slices, H, W); keys: {keys}",
            path,
            "write reconstructions with scripts/reconstruct.py",
        )
    return handle[RECON_DATASET]


def slice_count(path: str | Path) -> int:
    """Number of slices in a reconstruction file (reads the header only)."""
    dataset = open_reconstruction(path)
    try:
        return int(dataset.shape[0])
    finally:
        dataset.file.close()


# ---- synthetic data (simulated k-space, reconstructed once, cached) ---------------------------
def synthetic_recon_dir(cache_dir: str | Path, params: Mapping) -> Path:
    """Where the simulated + reconstructed dataset for these settings lives (hash of settings)."""
    key = json.dumps(dict(params), sort_keys=True)
    return Path(cache_dir) / hashlib.sha1(key.encode()).hexdigest()[:10]


def ensure_synthetic_recon(cache_dir: str | Path, params: Mapping) -> Path:
    """Simulate k-space and reconstruct it once (temporary folder, then rename); the recon dir."""
    from mrinet.io.atomic import atomic_dir
    from mrinet.reconstruct import reconstruct_dataset
    from mrinet.sim.kspace_dataset import simulate_kspace_dataset

    params = dict(params)
    target = synthetic_recon_dir(cache_dir, params)
    if target.is_dir():
        log.info("synthetic reconstructions: using cached %s", target)
        return target / "recon"
    log.info("synthetic reconstructions: simulating %s into %s", params, target)
    sim = dict(params.get("simulation", {}))
    with atomic_dir(target) as tmp:
        simulate_kspace_dataset(tmp / "kspace", **sim)
        for recon in params.get("reconstructions", []):
            reconstruct_dataset(tmp / "kspace", tmp / "recon", **dict(recon))
        (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True))
    return target / "recon"


# ---- the DataModule --------------------------------------------------------------------------
class ReconQualityDataModule(pl.LightningDataModule):
    """Reference vs accelerated reconstructions (or several tags/R) as 2-D image classification.

    Exposes `classes` (for the model's class names). Images are (B, 1, H, W) float32, per-image
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
        if source not in SOURCES:
            raise ConfigError(f"unknown data source {source!r}", "data.source", f"use {SOURCES}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization {normalization!r}",
                "data.normalization",
                f"use one of {NORMALIZATIONS}",
            )
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
        preload = self.preload is True or (
            self.preload == "auto" and gigabytes <= self.preload_max_gb
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

    @property
    def preloaded(self) -> bool:
        """Whether the images are held in RAM (else read from HDF5 per batch)."""
        return isinstance(self.datasets.get("train"), InMemoryImages)

    def split_images(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 1, H, W) and labels (N,) of a split, normalised, never flipped."""
        dataset = self.datasets[name]
        if isinstance(dataset, InMemoryImages):
            return dataset.images, dataset.labels
        return dataset.read(np.arange(len(dataset))), torch.from_numpy(dataset.index.labels)

    # ---- loaders ---------------------------------------------------------------------------
    def _loader(self, name: str, train: bool) -> torch.utils.data.DataLoader:
        dataset = self.datasets[name]
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = EpochBatches(len(dataset), batch_size, shuffle=train, seed=self.seed)
        workers = 0 if isinstance(dataset, InMemoryImages) else self.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,  # every item already is a whole batch
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", train=False)
