"""Splits by unit (subject or volume): never samples of one unit in two splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrinet.errors import ConfigError

SPLITS = ("train", "val", "test")


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
