"""One epoch's sample order, shared by every batch server: seeded, resumable, split by rank.

The order is a permutation seeded by (seed, epoch), so a resumed run sees the batches of an
uninterrupted one. Under DDP each rank takes a disjoint share: equal for training (every rank
must run the same number of steps; the remainder of n // world is left out that epoch), every
sample exactly once for evaluation (shares differ by at most one), so the synced confusion
matrices are exact.
"""

from __future__ import annotations

import torch


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor | None:
    """This rank's sample indices for one epoch (int64); None means all of 0..n-1 in order."""
    rank, world = rank_and_world()
    if not shuffle and world == 1:
        return None
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    if world > 1:
        order = order[rank::world]
        if shuffle:
            order = order[: n // world]
    return order


def share_length(n: int, shuffle: bool) -> int:
    """How many of n samples this rank serves per epoch (the length of `epoch_order`)."""
    rank, world = rank_and_world()
    if world == 1:
        return n
    return n // world if shuffle else len(range(rank, n, world))
