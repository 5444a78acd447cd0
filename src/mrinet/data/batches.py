"""Whole batches sliced from in-memory tensors: no per-sample __getitem__, no collate.

RESEARCH.md: per-sample DataLoaders cost 3-5x the training step on the DTI MLP; slicing a
once-per-epoch permutation keeps the loop within ~10% of a hand-written one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TensorBatches:
    """Iterable of (x, y) batches over tensors of equal length.

    Shuffled batches use a permutation seeded by (seed, epoch), so a resumed run sees the same
    order as an uninterrupted one. Under DDP each rank takes a disjoint share: equal for
    training, every sample exactly once for evaluation.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors, self.batch_size = tensors, int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch_fn = epoch_fn or (lambda: 0)

    def _indices(self) -> torch.Tensor | None:
        n = len(self.tensors[0])
        rank, world = _rank_and_world()
        if not self.shuffle and world == 1:
            return None
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if world > 1:
            # training: equal shares (every rank must run the same number of steps, the
            # remainder of n // world is left out this epoch); evaluation: every sample exactly
            # once (shares differ by at most one), so the synced confusion matrices are exact
            order = order[rank::world]
            if self.shuffle:
                order = order[: n // world]
        return order

    def _length(self) -> int:
        n = len(self.tensors[0])
        rank, world = _rank_and_world()
        if world > 1:
            n = n // world if self.shuffle else len(range(rank, n, world))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return self._length()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        n_batches = self._length()
        for i in range(n_batches):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is None:
                yield tuple(t[sl] for t in self.tensors)  # views
            else:
                # a gather per batch, not one per epoch: a fresh epoch-sized copy (28 MB for 1e6
                # voxels) costs page faults; batch-sized buffers recycle (3-4x less time here)
                rows = order[sl]
                yield tuple(t.index_select(0, rows) for t in self.tensors)
