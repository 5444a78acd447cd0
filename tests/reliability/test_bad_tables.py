"""Bad voxel tables through `mrinet.train data.source=table`: one clear message, exit 1."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from tests.helpers import FEATURES, QUIET, assert_clear, guarded_run

TABLE = ["experiment=dti_mlp", "data.source=table", "data.split=[0.5,0.25,0.25]", *QUIET]
MEANS = {1: [898, 0.22, 1.07, 1.33, 0.94], 2: [1007, 0.68, 0.39, 0.72, 0.22]}
MEANS[3] = [867, 0.38, 0.58, 0.82, 0.45]


def frame(subjects: int = 4, per_class: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for s in range(subjects):
        for label, mean in MEANS.items():
            values = np.asarray(mean) * (1 + 0.1 * rng.normal(size=(per_class, 5)))
            part = pd.DataFrame(values, columns=FEATURES)
            part["label"], part["subject"] = label, f"s{s}"
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def table_run(path, paths_for, capsys, *extra: str) -> str:
    overrides = [*TABLE, f"data.table_path={path}", *paths_for(), *extra]
    return guarded_run("train", overrides, capsys)


def test_missing_table(tmp_path, paths_for, capsys):
    err = table_run(tmp_path / "nope.csv", paths_for, capsys)
    assert_clear(err, "voxel table not found", tmp_path / "nope.csv", "data.table_path")


def test_missing_column(tmp_path, paths_for, capsys):
    path = tmp_path / "t.csv"
    frame().drop(columns="RD").to_csv(path, index=False)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "column(s) ['RD'] not found", path, "data.columns")


def test_non_numeric_values(tmp_path, paths_for, capsys):
    path = tmp_path / "t.csv"
    df = frame().astype({"MD": object})
    df.loc[[3, 7], "MD"] = "n/a?"
    df.to_csv(path, index=False)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "column 'MD' has 2 non-numeric value(s)", path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_nonfinite_values_error_names_column_and_count(tmp_path, paths_for, capsys, suffix):
    path = tmp_path / f"t{suffix}"
    df = frame()
    df.loc[[1, 2, 3], "FA"] = np.nan
    df.loc[5, "AD"] = np.inf
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    err = table_run(path, paths_for, capsys, "trainer.max_epochs=1")
    assert_clear(err, "{'FA': 3, 'AD': 1}", path, "data.drop_nonfinite=true")


def test_drop_nonfinite_drops_and_logs_the_count(tmp_path, caplog):
    from mrinet.data.tissue.voxel_module import DTIDataModule

    path = tmp_path / "t.csv"
    df = frame()
    df.loc[[1, 2, 3], "FA"] = np.nan
    df.loc[[3, 5], "AD"] = -np.inf
    df.to_csv(path, index=False)
    dm = DTIDataModule(
        source="table", table_path=str(path), split=[0.5, 0.25, 0.25], drop_nonfinite=True
    )
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert sum(len(v["y"]) for v in dm.data.values()) == len(df) - 4
    assert "dropped 4 row(s)" in caplog.text and "'FA': 3" in caplog.text


def test_duplicated_header(tmp_path, paths_for, capsys):
    path = tmp_path / "t.csv"
    df = frame()
    df.insert(2, "MD_copy", df["MD"])
    text = df.to_csv(index=False).replace("MD_copy", "MD", 1)
    path.write_text(text)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "duplicated column names in the header: ['MD']", path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "the table is empty"), ("T1w,FA,MD,AD,RD,label,subject\n", "no rows")],
)
def test_empty_table(tmp_path, paths_for, capsys, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, message, path)


def test_empty_parquet(tmp_path, paths_for, capsys):
    path = tmp_path / "t.parquet"
    frame().iloc[:0].to_parquet(path)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "no rows", path)


def test_not_a_parquet_file(tmp_path, paths_for, capsys):
    path = tmp_path / "t.parquet"
    path.write_text(frame().to_csv(index=False))
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "cannot parse the table", path)


@pytest.mark.parametrize(
    ("column", "scale", "message"),
    [("FA", 100.0, "FA outside [0, 1]"), ("MD", 1e5, "implausible diffusivity scale")],
)
def test_implausible_units(tmp_path, paths_for, capsys, column, scale, message):
    path = tmp_path / "t.csv"
    df = frame()
    for name in ("MD", "AD", "RD") if column == "MD" else (column,):
        df[name] *= scale
    df.to_csv(path, index=False)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, message, path)


def test_unknown_class_name_in_labels(tmp_path, paths_for, capsys):
    path = tmp_path / "t.csv"
    df = frame()
    df["label"] = df["label"].map({1: "thalamus", 2: "corpus_callosum", 3: "putamen"})
    df.to_csv(path, index=False)
    err = table_run(path, paths_for, capsys)
    assert_clear(err, "unknown class name(s) ['putamen']", path, "thalamus")


def test_class_absent_from_a_split(tmp_path, paths_for, capsys):
    path = tmp_path / "t.csv"
    df = frame()
    df = df[~((df["label"] == 2) & df["subject"].isin(["s0", "s1", "s2", "s3"][:3]))]
    df.to_csv(path, index=False)
    err = table_run(path, paths_for, capsys, "data.seed=0")
    assert_clear(err, "have no voxel in the", "corpus_callosum", path)
