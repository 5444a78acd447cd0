"""Lazy HDF5 batches from DataLoader workers through a pool of reused shared-memory buffers."""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mrinet.data.recon_quality.batches import EpochBatches, HDF5Images


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
    in shared memory; otherwise the DataLoader copies it into a new shared segment. On a 2-core
    machine fresh memory costs ~1 ms per MB in page faults: a new 6.5 MB segment per 16-image batch
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
        # weak: a cycle owner -> DataLoader -> sampler -> owner left the loader to the cyclic
        # garbage collector, which may close the index queues before the DataLoader's own
        # shutdown sends its workers the stop: each worker then ran out its 5 s join timeout
        self._owner = weakref.ref(owner)

    @property
    def owner(self) -> SharedBatches:
        """The SharedBatches this sampler serves (alive while its DataLoader is)."""
        owner = self._owner()
        if owner is None:
            raise RuntimeError("the SharedBatches of this DataLoader is gone")
        return owner

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int]]:
        # runs on the first index request, after the DataLoader has drained the tasks of an
        # abandoned epoch (persistent workers): no worker writes into the pool any more
        self.owner._in_flight.clear()
        for indices, flip_seed in self.owner.sampler:
            yield indices.numpy(), flip_seed, self.owner._free_slot()

    def __len__(self) -> int:
        return len(self.owner.sampler)
