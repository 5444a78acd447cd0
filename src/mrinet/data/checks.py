"""Checks every DataModule makes of its settings and splits, with errors that name the key."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrinet.errors import ConfigError, DataFormatError


def check_positive(key: str, value, example: int) -> int:
    """A setting that counts something (batch size, crops, ...): an integer >= 1."""
    if int(value) < 1:
        raise ConfigError(
            f"{key} must be a positive integer, got {value}", key, f"e.g. {key}={example}"
        )
    return int(value)


def check_every_class(classes: Sequence[str], counts, split: str, where) -> None:
    """Every class has at least one voxel in the split (counts (C,)), else name the label map."""
    counts = np.asarray(counts)
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataFormatError(
            f"class(es) {empty} have no voxel in the {split} split (counts {counts.tolist()})",
            where,
            "check data.label_map codes against the label volume, or add subjects",
        )
