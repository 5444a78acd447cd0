"""Voxel tables (CSV, TSV, Parquet): one row per voxel, validated column by column."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError, MrinetError

SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".parquet": None, ".pq": None}


def read_voxel_table(
    path: str | Path,
    feature_columns: Sequence[str],
    label_column: str,
    subject_column: str | None = None,
):
    """Read a voxel table -> (features float32 (N, F), labels as read (N,), subjects or None).

    Only the needed columns are read; subjects come back as a pandas Categorical of strings
    (N small codes, not N Python strings: a 1e7-row table stays within a few hundred MB).
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
    sep = SUFFIXES[suffix.lower()]
    try:
        columns = _header(path, sep)
        _check_columns(path, columns, wanted)
        has_subjects = subject_column is not None and subject_column in columns
        needed = [*dict.fromkeys([*wanted, *([subject_column] if has_subjects else [])])]
        if sep is None:
            frame = _read_parquet(path, needed, subject_column if has_subjects else None)
        else:
            dtype = {subject_column: "category"} if has_subjects else None
            frame = pd.read_csv(path, sep=sep, usecols=needed, dtype=dtype, low_memory=False)
    except MrinetError:
        raise
    except ImportError as err:
        raise DataFormatError(
            f"reading Parquet needs pyarrow ({err})", path, "pip install 'mrinet[parquet]'"
        ) from err
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(
            f"cannot parse the table ({type(err).__name__}: {str(err).splitlines()[0][:300]})",
            path,
            "check the delimiter (CSV ',', TSV tab) and that every row has the same columns; "
            "a .parquet file must be Parquet",
        ) from err
    if len(frame) == 0:
        raise DataFormatError("the table has a header but no rows", path, "add voxel rows")
    features = np.empty((len(frame), len(feature_columns)), dtype=np.float32)
    for j, column in enumerate(feature_columns):
        keep = column in (label_column, subject_column)
        series = frame[column] if keep else frame.pop(column)  # free each column once converted
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & series.notna()
        if bad.any():
            example = series[bad].iloc[0]
            raise DataFormatError(
                f"column {column!r} has {int(bad.sum())} non-numeric value(s), e.g. {example!r}",
                path,
                "fix or remove those rows",
            )
        features[:, j] = values.to_numpy(dtype=np.float32, na_value=np.nan)
        del series, values
    labels = frame[label_column].to_numpy()
    subjects = None
    if has_subjects:
        subjects = frame[subject_column].astype("category")
        subjects = subjects.cat.rename_categories([str(c) for c in subjects.cat.categories])
        subjects = subjects.array  # pandas Categorical: codes + the few subject names
    return features, labels, subjects


def _header(path: Path, sep: str | None) -> list[str]:
    """Column names as written (duplicates kept), without reading the rows."""
    import pandas as pd

    if sep is None:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if path.suffix != ".gz":
        with open(path, "rb") as handle:
            if not handle.readline().strip():
                raise DataFormatError(
                    "the table is empty", path, "write a header row and voxel rows"
                )
    return [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]


def _check_columns(path: Path, columns: list[str], wanted: list[str]) -> None:
    # pandas renames a repeated header "MD" to "MD.1"
    duplicated = sorted(
        {c for c in columns if columns.count(c) > 1}
        | {str(c).rsplit(".", 1)[0] for c in columns if _is_renamed_dup(c, columns)}
    )
    if duplicated:
        raise DataFormatError(
            f"duplicated column names in the header: {duplicated}",
            path,
            "give every column a unique name",
        )
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ConfigError(
            f"column(s) {missing} not found; the table has {list(columns)}",
            f"{path} (data.columns)",
            "rename the columns in the file or set data.columns.features/label/subject to match",
        )


def _read_parquet(path: Path, columns: list[str], subject_column: str | None):
    """The needed Parquet columns as a DataFrame; subjects dictionary-encoded (categorical)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    if subject_column is not None:
        i = table.schema.get_field_index(subject_column)
        column = table.column(i)
        if not pa.types.is_dictionary(column.type):
            table = table.set_column(i, subject_column, column.dictionary_encode())
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _is_renamed_dup(column, columns) -> bool:
    base, _, suffix = str(column).rpartition(".")
    return bool(base) and suffix.isdigit() and base in columns
