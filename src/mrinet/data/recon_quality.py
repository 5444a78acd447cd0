"""Reconstruction-quality images: recon/<tag>/<volume>.h5 -> labelled 2-D images, split by volume.

Each class is one or more reconstruction tags (binary by default: the fully sampled `reference`
reconstructed by the same pipeline at R=1, against `pics_R4`). Images are centre-cropped and
normalised per image, so a class cannot be told from a global intensity scale. Batches are
whole (no per-sample collate): datasets that fit are preloaded into one tensor and served by
slicing it (the default); larger ones are read lazily from HDF5 files that each process opens
once (plain reads at the data's offset where the layout allows), with DataLoader workers
writing into a pool of shared-memory batch buffers (SharedBatches). Both paths serve
identical batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from mrinet.data.batches import _rank_and_world
from mrinet.data.dti import SPLITS, check_split_fractions, split_units
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError
from mrinet.io.recon_files import ReconFile, center_crop_box, slice_count

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "files")
NORMALIZATIONS = ("percentile", "meanstd", "none")
FLIPS = {"horizontal": -1, "vertical": -2}
PERCENTILE_PIXELS = 1 << 16  # larger images: percentile estimated on a regular subgrid


# ---- per-image transforms (batched, torch) --------------------------------------------------


def normalize_images(
    x: torch.Tensor, method: str = "percentile", percentile: float = 99.0, inplace: bool = False
) -> torch.Tensor:
    """Per-image intensity normalisation of (B, ..., H, W) magnitude images (float32).

    `percentile` (default) divides each image by its `percentile`-th intensity: zero stays zero
    (background stays background), the tissue lands near [0, 1] whatever the scanner or solver
    scaling, and unlike the maximum one bright pixel cannot set the scale. `meanstd` subtracts
    the mean and divides by the std (depends on how much background the image holds).
    `inplace` overwrites `x` (no second copy of a large tensor: fresh memory costs page faults).
    """
    if method == "none" or x.numel() == 0:
        return x
    if method == "percentile":
        scale = torch.from_numpy(percentile_scales(x.detach().cpu().numpy(), percentile))
        scale = scale.to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return x.div_(scale) if inplace else x / scale
    if method == "meanstd":
        flat = x.reshape(x.shape[0], -1)
        mean, std = flat.mean(1), flat.std(1).clamp(min=1e-12)
        shape = (-1, *([1] * (x.ndim - 1)))
        if inplace:
            return x.sub_(mean.view(shape)).div_(std.view(shape))
        return (x - mean.view(shape)) / std.view(shape)
    raise ConfigError(
        f"unknown normalization {method!r}", "data.normalization", f"use one of {NORMALIZATIONS}"
    )


def percentile_scales(images: np.ndarray, percentile: float) -> np.ndarray:
    """Divisor per image of (B, ..., H, W) float32 (any strides) for `percentile` normalisation.

    The `percentile`-th intensity (of a regular subgrid with at most PERCENTILE_PIXELS pixels:
    1/4 of the pixels of a 320x320 image is plenty); an image whose percentile is not positive
    is divided by its largest magnitude instead, so it is never divided by zero. (B,) float32.
    """
    sample = images
    while sample.shape[-1] * sample.shape[-2] > PERCENTILE_PIXELS:
        sample = sample[..., ::2, ::2]
    n = int(np.prod(sample.shape[1:]))
    position = percentile / 100.0 * (n - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, n - 1)
    stats = row_order_statistics(sample, lower, upper).astype(np.float64)
    value = (stats[:, 0] + (position - lower) * (stats[:, 1] - stats[:, 0])).astype(images.dtype)
    bad = np.flatnonzero(~(value > 0))
    for b in bad:  # rare: mostly-empty images
        value[b] = np.abs(images[b]).max()
    return np.maximum(value, images.dtype.type(1e-12))


def row_order_statistics(sample: np.ndarray, lower: int, upper: int) -> np.ndarray:
    """Values of ascending rank `lower` and `upper` of each image of (B, ...) (any strides).

    Exactly numpy.partition's (NaN sorts last), at a fraction of its cost for high ranks: a
    threshold from a coarse subsample keeps only the pixels that can hold those ranks (every
    pixel below it ranks lower); an image where too few pass is partitioned whole. (B, 2).
    """
    batch = sample.shape[0]
    flat = np.ascontiguousarray(sample).reshape(batch, -1)  # strided reads cost more than this
    n = flat.shape[1]
    top = n - lower  # pixels of rank >= lower
    out = np.empty((batch, 2), dtype=flat.dtype)
    values, rows = [flat[b] for b in range(batch)], [lower] * batch
    if n >= 4096 and top * 32 <= n:
        coarse = flat[:, ::16]
        m = coarse.shape[1]
        k = max(m - 1 - 3 * int(np.ceil(top * m / n)), 0)  # ~3x the needed pixels pass
        threshold = np.partition(coarse, k, axis=1)[:, k : k + 1]
        keep = np.less(flat, threshold)
        keep = np.logical_not(keep, out=keep)  # not `>=`: NaN is kept, as partition sorts it last
        where = np.flatnonzero(keep)
        kept = flat.reshape(-1)[where]
        bounds = np.searchsorted(where, np.arange(batch + 1) * n)
        for b in range(batch):
            count = int(bounds[b + 1] - bounds[b])
            if count >= top:
                values[b], rows[b] = kept[bounds[b] : bounds[b + 1]], lower - (n - count)
    for b in range(batch):
        part = np.partition(values[b], [rows[b], rows[b] + upper - lower])
        out[b] = part[rows[b]], part[rows[b] + upper - lower]
    return out


def row_percentile(flat: torch.Tensor, percentile: float) -> torch.Tensor:
    """Percentile of each row of (B, N), linearly interpolated like numpy.percentile (exact)."""
    x = flat.detach().cpu().numpy()
    position = percentile / 100.0 * (x.shape[1] - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, x.shape[1] - 1)
    stats = row_order_statistics(x, lower, upper).astype(np.float64)
    value = stats[:, 0] + (position - lower) * (stats[:, 1] - stats[:, 0])
    return torch.from_numpy(value).to(device=flat.device, dtype=flat.dtype)


def flip_codes(n: int, flips: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Per image (n,) int64: bit k set = apply flip k of `flips` (each with probability 1/2)."""
    codes = torch.zeros(n, dtype=torch.int64)
    for k in range(len(flips)):
        codes |= (torch.rand(n, generator=generator) < 0.5).long() << k
    return codes


def apply_flips(
    x: torch.Tensor, codes: torch.Tensor, flips: Sequence[str], chunk: int = 64
) -> torch.Tensor:
    """Flip images of (B, C, H, W) in place as `codes` (B,) say (see flip_codes).

    Vectorised: per combination of flips, its images are gathered, flipped and written back in
    one call per `chunk` images (small temporaries are reused by the allocator; large ones
    cost page faults), never one call per image.
    """
    for start in range(0, x.shape[0], chunk):
        part, part_codes = x[start : start + chunk], codes[start : start + chunk]
        for code in part_codes.unique().tolist():
            if code:
                dims = [FLIPS[name] for k, name in enumerate(flips) if code >> k & 1]
                chosen = part_codes == code
                part[chosen] = part[chosen].flip(dims)
    return x


def random_flips(x: torch.Tensor, flips: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right / up-down with probability 1/2 each, in place.

    Flips keep the phase-encode direction of 1-D undersampling artifacts (a transpose would not).
    """
    return apply_flips(x, flip_codes(x.shape[0], flips, generator), flips)


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

    The order is a permutation seeded by (seed, epoch), as in mrinet.data.batches.TensorBatches,
    so a resumed run sees the batches of an uninterrupted one. Runs in the main process, so
    workers only read: each gets whole index lists. Under DDP each rank takes a disjoint share:
    equal for training, every image exactly once for evaluation.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = int(n), int(batch_size), shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def sequential(self) -> bool:
        """Whether batches are consecutive index ranges (evaluation on a single process)."""
        return not self.shuffle and _rank_and_world()[1] == 1

    def order(self) -> torch.Tensor:
        """This epoch's image order (this rank's share under DDP)."""
        rank, world = _rank_and_world()
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        if world > 1:
            order = order[rank::world]
            if self.shuffle:
                order = order[: self.n // world]
        return order

    def flip_seed(self, batch: int) -> int:
        """Seed of the flips of batch number `batch` this epoch."""
        return (self.seed * 1_000_003 + self.epoch) * 100_019 + batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        order = self.order()
        for i, start in enumerate(range(0, len(order), self.batch_size)):
            yield order[start : start + self.batch_size], self.flip_seed(i)

    def __len__(self) -> int:
        return -(-len(self.order()) // self.batch_size)


class InMemoryImages:
    """Preloaded images (N, 1, H, W) float32 and labels (N,) of one split."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, flips: Sequence[str] = ()):
        self.images, self.labels, self.flips = images, labels, tuple(flips)

    def __len__(self) -> int:
        return len(self.labels)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch ops single-threaded inside, restoring the thread count after.

    On the loaded 2-core machine, 2-thread copies/flips of image batches ran 3-30x slower than
    one thread (each op waits for a thread that another process holds).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ImageBatches:
    """Whole (x, y) batches sliced from one preloaded tensor; no DataLoader, no collate.

    Training, as mrinet.data.batches.TensorBatches: one gather of the split in the epoch's
    permutation, then every batch is a view of it. The gather reuses one buffer across epochs:
    on this VM fresh memory costs more in page faults than the copy (a new 130 MB tensor per
    epoch ran at ~1 GB/s, per-batch gathers at ~450 images/s), so a training batch is valid
    until the next epoch starts (clone it to keep it). Flips are drawn per batch (the lazy
    path's seeds) and applied to the epoch copy in chunks. Evaluation: views of the preloaded
    tensor itself.
    `sampler` carries the epoch (Lightning calls `sampler.set_epoch` on any loader with one).
    """

    batch_sampler = None  # Lightning inspects loaders' samplers like a DataLoader's

    def __init__(self, data: InMemoryImages, sampler: EpochBatches) -> None:
        self.data, self.sampler = data, sampler
        self._buffer: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels, flips = self.data.images, self.data.labels, self.data.flips
        with one_thread():  # memory-bound copies: a 2nd thread on a busy core stalls both
            if not self.sampler.sequential:
                order = self.sampler.order()
                shape = (len(order), *images.shape[1:])
                if self._buffer is None or self._buffer.shape != shape:
                    self._buffer = torch.empty(shape, dtype=images.dtype)
                images = torch.index_select(images, 0, order, out=self._buffer)
                labels = labels.index_select(0, order)
            elif flips:
                images = images.clone()  # flips work in place: never on the preloaded tensor
            size = self.sampler.batch_size
            starts = range(0, len(labels), size)
            if flips:  # drawn per batch with the lazy path's seeds, applied to the copy at once
                codes = [
                    flip_codes(
                        min(size, len(labels) - start),
                        flips,
                        torch.Generator().manual_seed(self.sampler.flip_seed(i)),
                    )
                    for i, start in enumerate(starts)
                ]
                apply_flips(images, torch.cat(codes), flips)
        for start in starts:
            yield images[start : start + size], labels[start : start + size]


class HDF5Images(torch.utils.data.Dataset):
    """Images read on demand from reconstruction files, each opened once per process (worker).

    Items are (indices, flip_seed) from EpochBatches (SharedBatches calls `batch` with its
    shared output buffer instead). Uncompressed contiguous float32
    datasets (what mrinet writes, and fastMRI's) are read with one pread per image at the
    dataset's file offset into a reused scratch buffer: ~35 us per 320x320 image against
    ~230 us for an h5py hyperslab read, whose per-call selection cost dominated. Other layouts
    (chunked, compressed, other dtypes, complex) are read through h5py. Then one pass writes
    each image divided by its scale and flipped (numpy views with negative strides) into the
    output, with no temporaries: bit for bit the preloaded path's normalise-then-flip.
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
        self._files: dict[int, ReconFile] = {}
        self._scratch = np.empty((0, *self.crop), dtype=np.float32)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"] = {}  # open files never cross a process boundary
        state["_scratch"] = np.empty((0, *self.crop), dtype=np.float32)
        return state

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        """Close the files this process opened (they reopen on the next read)."""
        files, self._files = self._files, {}
        for recon in files.values():
            recon.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _file(self, file_number: int) -> ReconFile:
        if file_number not in self._files:
            self._files[file_number] = ReconFile(self.index.files[file_number], self.crop)
        return self._files[file_number]

    def read(
        self,
        indices: np.ndarray,
        out: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cropped, normalised images (len(indices), 1, H, W) in the order of `indices`.

        `codes` (see flip_codes) flips them after normalisation; `out` receives them.
        """
        n = len(indices)
        if out is None:
            out = torch.empty(n, 1, *self.crop)
        raw = self._read_raw(np.asarray(indices, dtype=np.int64))
        if self.normalization not in ("percentile", "none"):  # meanstd: torch reductions
            out.numpy()[:, 0] = raw
            normalize_images(out, self.normalization, self.percentile, inplace=True)
            return out if codes is None else apply_flips(out, codes, self.flips)
        scales = percentile_scales(raw, self.percentile) if self.normalization != "none" else None
        target = out.numpy()[:, 0]
        codes = [0] * n if codes is None else codes.tolist()
        for i in range(n):
            image = raw[i]
            for k, name in enumerate(self.flips):
                if codes[i] >> k & 1:  # a view with negative strides: no copy
                    image = image[:, ::-1] if FLIPS[name] == -1 else image[::-1]
            if scales is None:
                np.copyto(target[i], image)
            else:
                np.divide(image, scales[i], out=target[i])
        return out

    def _read_raw(self, indices: np.ndarray) -> np.ndarray:
        """Cropped images (len(indices), H, W) as stored, in a scratch buffer reused per call."""
        if len(self._scratch) < len(indices):
            self._scratch = np.empty((len(indices), *self.crop), dtype=np.float32)
        raw = self._scratch[: len(indices)]
        files = self.index.file_index[indices]
        slices = self.index.slice_index[indices]
        for file_number in np.unique(files):
            recon = self._file(int(file_number))
            positions = np.flatnonzero(files == file_number)
            if recon.offset is not None:
                for position in positions:
                    recon.read_into(raw[position], int(slices[position]))
            else:
                unique, inverse = np.unique(slices[positions], return_inverse=True)
                raw[positions] = recon.read_h5(unique)[inverse]
        return raw

    def batch(
        self, indices: np.ndarray, flip_seed: int, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Images (B, 1, H, W) of `indices`, flipped as `flip_seed` draws, and labels (B,)."""
        indices = np.asarray(indices, dtype=np.int64)
        codes = None
        if self.flips:
            gen = torch.Generator().manual_seed(int(flip_seed))
            codes = flip_codes(len(indices), self.flips, gen)
        with one_thread():  # small memory-bound ops (DataLoader workers use 1 thread anyway)
            x = self.read(indices, out=out, codes=codes)
        return x, self.index.labels[indices]

    def __getitem__(self, item: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, torch.Tensor]:
        x, labels = self.batch(*item)
        return x, torch.from_numpy(labels)


def _storage_users(storage: torch.UntypedStorage) -> int | None:
    """Strong references to a storage (tensors and storage objects), None where torch hides it."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else int(count(storage._cdata))


def _as_is(batch):
    """DataLoader collate for whole batches: keep the worker's tuple as it is."""
    return batch


class _PooledImages(torch.utils.data.Dataset):
    """HDF5Images writing into a pool of shared buffers that workers inherit at start.

    Item (indices, flip_seed, slot): slot >= 0 writes into pool buffer `slot` and returns
    (slot, None, labels); slot -1 writes into a new shared buffer and returns it. Only numpy
    arrays and ints cross processes besides that buffer (a tensor would cost a shared segment).
    """

    def __init__(self, images: HDF5Images, pool: Sequence[torch.UntypedStorage]) -> None:
        self.images, self.pool = images, list(pool)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple) -> tuple[int, torch.Tensor | None, np.ndarray]:
        indices, flip_seed, slot = item
        shape = (len(indices), 1, *self.images.crop)
        if slot >= 0:
            out = torch.empty(0).set_(self.pool[slot], 0, shape)
        else:
            out = torch.empty(0).set_(
                torch.UntypedStorage(4 * math.prod(shape)).share_memory_(), 0, shape
            )
        x, labels = self.images.batch(indices, flip_seed, out)
        return slot, (None if slot >= 0 else x), labels


class SharedBatches:
    """Lazy HDF5 batches from DataLoader workers, written into reused shared-memory buffers.

    A worker's tensor crosses to the main process without a copy only if its storage already is
    in shared memory; otherwise the DataLoader copies it into a new shared segment. On this VM
    fresh memory costs ~1 ms per MB in page faults: a new 6.5 MB segment per 16-image batch
    took ~7 ms, more than reading and normalising the batch, and passing its file descriptor
    another ~0.5 ms. So this main-process object allocates a pool of shared buffers before the
    (persistent) workers start; they inherit it, write a batch into the buffer the main process
    names with the indices, and send back only the slot number and the labels. A buffer is
    reused only when it is not in flight and no tensor outside the pool refers to its storage,
    so a batch that a caller keeps is never overwritten (when none is free, a worker returns
    a new shared buffer instead). `sampler` carries the epoch (Lightning calls set_epoch).
    """

    batch_sampler = None  # Lightning inspects loaders' samplers like a DataLoader's

    def __init__(
        self, dataset: HDF5Images, sampler: EpochBatches, num_workers: int, prefetch_factor: int = 2
    ) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.num_workers, self.prefetch_factor = int(num_workers), int(prefetch_factor)
        # in flight, plus the batch in use and the one Lightning fetches ahead, plus one spare
        self.capacity = self.prefetch_factor * self.num_workers + 3
        if _storage_users(torch.UntypedStorage(0)) is None:
            self.capacity = 0  # cannot tell when a buffer is free: never reuse one
        self._pool: list[torch.UntypedStorage] = []
        self._in_flight: set[int] = set()
        self._loader: torch.utils.data.DataLoader | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def loader(self) -> torch.utils.data.DataLoader:
        """The DataLoader (built with the pool on first use, so its workers inherit the pool)."""
        if self._loader is None:
            nbytes = 4 * self.sampler.batch_size * self.dataset.crop[0] * self.dataset.crop[1]
            self._pool = [
                torch.UntypedStorage(nbytes).share_memory_() for _ in range(self.capacity)
            ]
            self._loader = torch.utils.data.DataLoader(
                _PooledImages(self.dataset, self._pool),
                sampler=_PooledItems(self),
                batch_size=None,  # every item already is a whole batch
                collate_fn=_as_is,
                num_workers=self.num_workers,
                prefetch_factor=self.prefetch_factor,
                persistent_workers=True,  # also: a new epoch waits for the last one's tasks
            )
        return self._loader

    def _free_slot(self) -> int:
        """A pool buffer no worker writes and no tensor outside the pool holds, else -1."""
        for slot, storage in enumerate(self._pool):
            if slot not in self._in_flight and _storage_users(storage) == 1:
                self._in_flight.add(slot)
                return slot
        return -1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        crop = self.dataset.crop
        for slot, x, labels in self.loader:
            if slot >= 0:
                self._in_flight.discard(slot)
                x = torch.empty(0).set_(self._pool[slot], 0, (len(labels), 1, *crop))
            yield x, torch.from_numpy(labels)


class _PooledItems(torch.utils.data.Sampler):
    """The epoch's (indices, flip_seed) with the pool slot to write into (-1: none free)."""

    def __init__(self, owner: SharedBatches) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int]]:
        # runs on the first index request, after the DataLoader has drained the tasks of an
        # abandoned epoch (persistent workers): no worker writes into the pool any more
        self.owner._in_flight.clear()
        for indices, flip_seed in self.owner.sampler:
            yield indices.numpy(), flip_seed, self.owner._free_slot()

    def __len__(self) -> int:
        return len(self.owner.sampler)


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
    return normalize_images(out, normalization, percentile, inplace=True)


def physical_memory_gb() -> float:
    """Installed RAM in GB (inf where the OS does not say): caps what `preload="auto"` holds."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (AttributeError, ValueError, OSError):
        return float("inf")


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
            return ImageBatches(dataset, sampler)  # slicing RAM: workers would only add copies
        if self.num_workers > 0:
            return SharedBatches(dataset, sampler, self.num_workers)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None)

    def train_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("val", train=False)

    def test_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._loader("test", train=False)
