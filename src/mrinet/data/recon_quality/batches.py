"""Whole batches of images: sliced from RAM (ImageBatches) or read from HDF5 (HDF5Images).

Both paths serve identical batches: the same epoch order (mrinet.data.loading.sharding.epoch_order),
the same per-batch flip seeds, the same normalise-then-flip arithmetic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mrinet.data.loading.sharding import epoch_order, rank_and_world
from mrinet.data.recon_quality.index import ImageIndex
from mrinet.data.recon_quality.transforms import (
    FLIPS,
    apply_flips,
    flip_codes,
    normalize_images,
    percentile_scales,
)
from mrinet.io.recon_files import ReconFile


class EpochBatches(torch.utils.data.Sampler):
    """Yields (indices, flip_seed) per batch; reshuffled per epoch (Lightning calls set_epoch).

    The order is mrinet.data.loading.sharding.epoch_order's (seeded by (seed, epoch): a resumed run sees
    the batches of an uninterrupted one). Runs in the main process, so
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
        return not self.shuffle and rank_and_world()[1] == 1

    def order(self) -> torch.Tensor:
        """This epoch's image order (this rank's share under DDP)."""
        order = epoch_order(self.n, self.shuffle, self.seed, self.epoch)
        return torch.arange(self.n) if order is None else order

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

    On a loaded 2-core machine, 2-thread copies/flips of image batches ran 3-30x slower than
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

    Training: one gather of the whole split in the epoch's order into a buffer reused across
    epochs (unlike TensorBatches' per-batch gathers: an image batch is large enough that one
    big copy beats many; a fresh epoch-sized tensor per epoch cost more in page faults than
    the copy), then every batch is a view of it, so a training batch is valid until the next
    epoch starts (clone it to keep it). Flips are drawn per batch (the lazy path's seeds) and
    applied to the epoch copy in chunks. Evaluation: views of the preloaded tensor itself.
    `sampler` carries the epoch (Lightning calls `sampler.set_epoch` on any loader with one).
    `pin_memory` (training on CUDA): the epoch buffer is page-locked, so batch copies to the GPU
    do not block the host.
    """

    batch_sampler = None  # Lightning inspects loaders' samplers like a DataLoader's

    def __init__(
        self, data: InMemoryImages, sampler: EpochBatches, pin_memory: bool = False
    ) -> None:
        self.data, self.sampler, self.pin_memory = data, sampler, bool(pin_memory)
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
                    self._buffer = torch.empty(
                        shape, dtype=images.dtype, pin_memory=self.pin_memory
                    )
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
