"""Voxel tables (CSV, TSV, Parquet): one row per voxel, validated column by column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError

SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".parquet": None, ".pq": None}


def read_voxel_table(
    path: str | Path,
    feature_columns: Sequence[str],
    label_column: str,
    subject_column: str | None = None,
):
    """Read a voxel table -> (features float32 (N, F), labels as read (N,), subjects or None).

    Labels stay raw (1-based integers or class names); mapping them to classes is the caller's job.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            "voxel table not found", path, "set data.table_path to an existing CSV/TSV/Parquet file"
        )
    suffix = "".join(path.suffixes[-2:-1]) if path.suffix == ".gz" else path.suffix
    if suffix.lower() not in SUFFIXES:
        raise DataFormatError(
            f"unsupported table type {path.suffix!r}",
            path,
            f"use one of {', '.join(SUFFIXES)} (optionally .gz compressed for text tables)",
        )
    wanted = [*feature_columns, label_column]
    try:
        if SUFFIXES[suffix.lower()] is None:
            frame = pd.read_parquet(path)
        else:
            with open(path, "rb") as handle:
                header = handle.readline()
            if not header.strip() and path.suffix != ".gz":
                raise DataFormatError(
                    "the table is empty", path, "write a header row and voxel rows"
                )
            frame = pd.read_csv(path, sep=SUFFIXES[suffix.lower()], low_memory=False)
    except DataFormatError:
        raise
    except ImportError as err:
        raise DataFormatError(
            f"reading Parquet needs pyarrow ({err})", path, "pip install 'mrinet[parquet]'"
        ) from err
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(
            f"cannot parse the table ({type(err).__name__}: {err})",
            path,
            "check the delimiter (CSV ',', TSV tab) and that every row has the same columns",
        ) from err
    # pandas renames a repeated header "MD" to "MD.1"
    duplicated = sorted(
        {str(c).rsplit(".", 1)[0] for c in frame.columns if _is_renamed_dup(c, frame)}
    )
    if duplicated:
        raise DataFormatError(
            f"duplicated column names in the header: {duplicated}",
            path,
            "give every column a unique name",
        )
    if len(frame) == 0:
        raise DataFormatError("the table has a header but no rows", path, "add voxel rows")
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"column(s) {missing} not found; the table has {list(frame.columns)}",
            f"{path} (data.columns)",
            "rename the columns in the file or set data.columns.features/label/subject to match",
        )
    features = np.empty((len(frame), len(feature_columns)), dtype=np.float32)
    for j, column in enumerate(feature_columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            example = frame[column][bad].iloc[0]
            raise DataFormatError(
                f"column {column!r} has {int(bad.sum())} non-numeric value(s), e.g. {example!r}",
                path,
                "fix or remove those rows",
            )
        features[:, j] = values.to_numpy(dtype=np.float32, na_value=np.nan)
    labels = frame[label_column].to_numpy()
    has_subjects = subject_column is not None and subject_column in frame.columns
    subjects = frame[subject_column].astype(str).to_numpy() if has_subjects else None
    return features, labels, subjects


def _is_renamed_dup(column, frame) -> bool:
    base, _, suffix = str(column).rpartition(".")
    return bool(base) and suffix.isdigit() and base in frame.columns
