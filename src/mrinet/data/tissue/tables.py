"""DTI voxels from a table (CSV, TSV, Parquet): one row per voxel, a label and a subject column.

The same unit checks as subject folders (MD/AD/RD to um^2/ms, FA in [0, 1]); labels are the
lecture's 1-based class numbers or class names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.data.tissue.subjects import Voxels, check_fa_range, convert_diffusivity_units
from mrinet.errors import DataFormatError
from mrinet.io.tables import read_voxel_table

log = logging.getLogger(__name__)


def load_table(
    table_path: str | Path,
    features: Sequence[str],
    classes: Sequence[str],
    label_column: str,
    subject_column: str | None,
    drop_nonfinite: bool = False,
) -> Voxels:
    """Read a voxel table; labels are the lecture's 1-based class numbers or class names."""
    x, raw, subjects = read_voxel_table(table_path, features, label_column, subject_column)
    labels = labels_to_indices(raw, classes, f"{table_path} (column {label_column!r})")
    nonfinite = ~np.isfinite(x)
    if nonfinite.any():
        counts = {
            features[j]: int(nonfinite[:, j].sum())
            for j in range(len(features))
            if nonfinite[:, j].any()
        }
        if not drop_nonfinite:
            raise DataFormatError(
                f"NaN/inf feature values per column: {counts}",
                table_path,
                "clean the table, or set data.drop_nonfinite=true to drop those rows",
            )
        keep = ~nonfinite.any(axis=1)
        log.warning(
            "%s: dropped %d row(s) with NaN/inf features %s", table_path, int((~keep).sum()), counts
        )
        x, labels = x[keep], labels[keep]
        subjects = None if subjects is None else subjects[keep]
    maps = {name: x[:, j] for j, name in enumerate(features)}
    if convert_diffusivity_units(maps, str(table_path)):
        x = np.stack([maps[name] for name in features], axis=1).astype(np.float32)
    if "FA" in maps:
        check_fa_range(maps["FA"], f"{table_path} (column 'FA')")
    return Voxels(x, labels, subjects)


def labels_to_indices(raw: np.ndarray, classes: Sequence[str], where: str) -> np.ndarray:
    """1-based class numbers (the lecture's 1, 2, 3) or class names -> 0-based class indices."""
    import pandas as pd

    numeric = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=np.float64)
    if np.all(np.isfinite(numeric)):
        if (
            not np.array_equal(numeric, np.round(numeric))
            or numeric.min() < 1
            or numeric.max() > len(classes)
        ):
            bad = sorted(
                set(
                    numeric[
                        (numeric < 1) | (numeric > len(classes)) | (numeric != np.round(numeric))
                    ]
                )
            )
            raise DataFormatError(
                f"label values {bad[:5]} are not class numbers 1..{len(classes)}",
                where,
                f"use 1..{len(classes)} in the order of data.classes {list(classes)}, or class names",
            )
        return numeric.astype(np.int64) - 1
    codes, names = pd.factorize(pd.Series(raw).astype(str))
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(name for name in names if name not in index)
    if unknown:
        raise DataFormatError(
            f"unknown class name(s) {unknown[:5]}",
            where,
            f"labels must be one of {list(classes)} or 1..{len(classes)}",
        )
    return np.asarray([index[name] for name in names], dtype=np.int64)[codes]
