"""DTI DataModule from voxel tables (CSV, TSV, Parquet)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError

FEATURES = ["T1w", "FA", "MD", "AD", "RD"]
MEANS = {
    1: [898, 0.22, 1.07, 1.33, 0.94],
    2: [1007, 0.68, 0.39, 0.72, 0.22],
    3: [867, 0.38, 0.58, 0.82, 0.45],
}


def voxel_frame(subjects: int = 6, per_class: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for label, mean in MEANS.items():
            values = np.asarray(mean) * (1 + 0.1 * rng.normal(size=(per_class, 5)))
            for v in values:
                rows.append({**dict(zip(FEATURES, v)), "label": label, "subject": f"s{s}"})
    return pd.DataFrame(rows)


def module(path, **kwargs) -> DTIDataModule:
    kwargs = {
        "source": "table",
        "table_path": str(path),
        "split": [0.5, 0.25, 0.25],
        "seed": 3,
        **kwargs,
    }
    dm = DTIDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_csv_split_is_by_subject_and_disjoint(tmp_path):
    voxel_frame().to_csv(tmp_path / "voxels.csv", index=False)
    dm = module(tmp_path / "voxels.csv")
    units = dm.split_units
    assert [len(units[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    assert not set(units["train"]) & set(units["val"]) and not set(units["train"]) & set(
        units["test"]
    )
    assert not set(units["val"]) & set(units["test"])
    assert sum(len(dm.data[s]["y"]) for s in units) == 6 * 120


def test_scaler_uses_training_split_only(tmp_path):
    frame = voxel_frame()
    frame.to_csv(tmp_path / "voxels.csv", index=False)
    dm = module(tmp_path / "voxels.csv")
    train = frame[frame.subject.isin(dm.split_units["train"])][FEATURES].to_numpy(np.float64)
    spec = dm.data_spec()
    mean, std = spec.tensor("input_mean"), spec.tensor("input_std")
    np.testing.assert_allclose(mean.numpy(), train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), train.std(0, ddof=1), rtol=1e-4)
    everything = frame[FEATURES].to_numpy(np.float64).mean(0)
    assert not np.allclose(mean.numpy(), everything, rtol=1e-4)


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_tsv_and_parquet_read_like_csv(tmp_path, suffix):
    frame = voxel_frame()
    frame.to_csv(tmp_path / "voxels.csv", index=False)
    path = tmp_path / f"voxels{suffix}"
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t", index=False)
    a, b = module(tmp_path / "voxels.csv"), module(path)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(a.data[split]["x"], b.data[split]["x"])
        assert torch.equal(a.data[split]["y"], b.data[split]["y"])


def test_class_names_as_labels_and_custom_columns(tmp_path):
    frame = voxel_frame().rename(columns={"label": "tissue", "subject": "sid", "FA": "fa"})
    names = ["thalamus", "corpus_callosum", "cortical_wm"]
    frame["tissue"] = [names[i - 1] for i in frame["tissue"]]
    frame.to_csv(tmp_path / "v.csv", index=False)
    dm = module(
        tmp_path / "v.csv",
        features=["T1w", "fa", "MD", "AD", "RD"],
        columns={"label": "tissue", "subject": "sid"},
    )
    assert set(dm.data["train"]["y"].tolist()) == {0, 1, 2}


def test_mm2_per_s_diffusivities_are_converted(tmp_path):
    frame = voxel_frame()
    frame.to_csv(tmp_path / "um.csv", index=False)
    frame[["MD", "AD", "RD"]] /= 1000.0
    frame.to_csv(tmp_path / "mm.csv", index=False)
    a, b = module(tmp_path / "um.csv"), module(tmp_path / "mm.csv")
    torch.testing.assert_close(a.data["train"]["x"], b.data["train"]["x"], rtol=1e-5, atol=1e-6)


def test_without_subject_column_voxels_are_split(tmp_path):
    voxel_frame().drop(columns="subject").to_csv(tmp_path / "v.csv", index=False)
    dm = module(tmp_path / "v.csv", split=[0.6, 0.2, 0.2])
    sizes = [len(dm.data[s]["y"]) for s in ("train", "val", "test")]
    assert sizes == [432, 144, 144]


def test_missing_column_names_file_and_key(tmp_path):
    voxel_frame().drop(columns="MD").to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(ConfigError, match=r"\['MD'\]") as err:
        module(tmp_path / "v.csv")
    assert "v.csv" in str(err.value) and "data.columns" in str(err.value)


def test_nonfinite_values_error_or_are_dropped(tmp_path):
    frame = voxel_frame()
    frame.loc[[0, 5, 9], "FA"] = np.nan
    frame.to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataFormatError, match="'FA': 3"):
        module(tmp_path / "v.csv")
    dm = module(tmp_path / "v.csv", drop_nonfinite=True)
    assert sum(len(dm.data[s]["y"]) for s in dm.data) == len(frame) - 3


def test_non_numeric_value_is_named(tmp_path):
    frame = voxel_frame().astype({"MD": object})
    frame.loc[7, "MD"] = "1,07"
    frame.to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataFormatError, match=r"column 'MD'.*'1,07'"):
        module(tmp_path / "v.csv")


def test_label_outside_classes_is_an_error(tmp_path):
    frame = voxel_frame()
    frame.loc[0, "label"] = 4
    frame.to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataFormatError, match=r"1..3"):
        module(tmp_path / "v.csv")


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data.table_path"):
        module(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        module(tmp_path / "empty.csv")


def test_split_fractions_must_sum_to_one(tmp_path):
    with pytest.raises(ConfigError, match=r"data.split"):
        DTIDataModule(source="table", table_path="x.csv", split=[0.5, 0.2, 0.2])


def test_batches_cover_training_split_once_per_epoch(tmp_path):
    voxel_frame().to_csv(tmp_path / "v.csv", index=False)
    dm = module(tmp_path / "v.csv", batch_size=64)
    loader = dm.train_dataloader()
    seen = torch.cat([y for _, y in loader])
    assert len(loader) == -(-len(dm.data["train"]["y"]) // 64)
    assert torch.equal(seen.sort().values, dm.data["train"]["y"].sort().values)
    first = torch.cat([x[:, 0] for x, _ in loader])
    assert torch.equal(first, torch.cat([x[:, 0] for x, _ in loader]))  # same epoch, same order
