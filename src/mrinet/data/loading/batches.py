"""Whole batches sliced from in-memory tensors: no per-sample __getitem__, no collate.

docs/benchmarks.md: per-sample DataLoaders cost 3-5x the training step on the DTI MLP; slicing a
once-per-epoch permutation keeps the loop within ~10% of a hand-written one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from mrinet.data.contract import BatchGroup
from mrinet.data.loading.sharding import epoch_order, share_length


def pin_for(trainer) -> bool:
    """Pin host batches (page-locked: copied to the GPU without blocking) when the trainer
    trains on a CUDA device; False on the CPU or before a trainer is attached."""
    if trainer is None or not torch.cuda.is_available():
        return False
    return trainer.strategy.root_device.type == "cuda"


class TensorBatches:
    """Iterable of (x, y) batches over tensors of equal length, in mrinet.data.loading.sharding's order.

    `group` k > 1 yields each item as a BatchGroup of k consecutive (x, y) batches (fewer at the end
    of the epoch): the model runs one optimizer step per batch of the group, with the loop's
    per-batch cost paid once per group (Classifier's grouped steps). The batches, their order
    and so the updates are those of k = 1; the model never needs to know the batch size.

    Resumable mid-epoch (Lightning's `state_dict`/`load_state_dict` protocol): the state is the
    epoch and the items served so far in it (Lightning fetches nothing ahead from a loader with
    a length, so served = taken by the training loop); a resumed run continues after them.
    Evaluation loaders (not shuffled) always start from their first batch.
    `pin_memory` (CUDA only, `pin_for`): batches are gathered into page-locked memory, so the
    host-to-device copy (non_blocking, Lightning's and the grouped steps') overlaps the step.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        epoch_fn: Callable[[], int] | None = None,
        group: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        self.tensors, self.batch_size, self.group = tensors, int(batch_size), int(group)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.pin_memory = bool(pin_memory)
        self._served, self._epoch = 0, None
        self._skip: tuple[int, int] | None = None  # (epoch, items) to skip on the next pass

    def state_dict(self) -> dict:
        """Where the training loop is in this epoch (see the class docstring)."""
        return {"epoch": self._epoch, "taken": self._served}

    def load_state_dict(self, state: dict) -> None:
        """Continue the saved epoch after its taken items (a run resumed mid-epoch)."""
        if self.shuffle and state.get("epoch") is not None and int(state.get("taken", 0)) > 0:
            self._skip = (int(state["epoch"]), int(state["taken"]))

    def _batches(self) -> int:
        n = share_length(len(self.tensors[0]), self.shuffle)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return -(-self._batches() // self.group)

    def _iter_batches(self, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = epoch_order(len(self.tensors[0]), self.shuffle, self.seed, self.epoch_fn())
        for i in range(start, self._batches()):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is None:
                views = tuple(t[sl] for t in self.tensors)
                yield tuple(t.pin_memory() for t in views) if self.pin_memory else views
            else:
                # a gather per batch, not one per epoch: a fresh epoch-sized copy (28 MB for 1e6
                # voxels) costs page faults; batch-sized buffers recycle (3-4x less time on a 2-core CPU)
                rows = order[sl]
                yield tuple(self._gather(t, rows) for t in self.tensors)

    def _gather(self, tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """tensor[rows], into pinned memory when pinning (torch's pinned allocator keeps a
        buffer until the copies queued from it are done, so reuse is safe)."""
        if not self.pin_memory:
            return tensor.index_select(0, rows)
        out = torch.empty((len(rows), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=True)
        return torch.index_select(tensor, 0, rows, out=out)

    def __iter__(self) -> Iterator:
        self._epoch, skip, self._skip = self.epoch_fn(), self._skip, None
        self._served = min(skip[1], len(self)) if skip and skip[0] == self._epoch else 0
        batches = self._iter_batches(self._served * self.group)
        if self.group == 1:
            for batch in batches:
                self._served += 1
                yield batch
            return
        group = BatchGroup()
        for batch in batches:
            group.append(batch)
            if len(group) == self.group:
                self._served += 1
                yield group
                group = BatchGroup()
        if group:
            self._served += 1
            yield group
