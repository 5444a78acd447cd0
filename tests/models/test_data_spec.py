"""The model/data contract: one DataSpec from the DataModule to the model, kept in checkpoints."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from mrinet.data.contract import BatchGroup, DataSpec
from mrinet.data.loading.batches import TensorBatches
from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.errors import CheckpointError, ConfigError
from mrinet.models.classifier import Classifier
from mrinet.nets.mlp import MLP
from mrinet.run.checkpoints import build_model, load_checkpoint


def table(path, n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.array([[1.0, 0.3, 0.8, 1.2, 0.6]]) * (1 + y[:, None]) + rng.normal(size=(n, 5))
    frame = pd.DataFrame(x * [100, 1, 1, 1, 1], columns=["T1w", "FA", "MD", "AD", "RD"])
    frame = frame.assign(label=y + 1, subject=[f"s{i % 6}" for i in range(n)])
    frame["FA"] = frame["FA"].clip(0, 1)
    frame.to_csv(path, index=False)
    return path


def datamodule(path, **kw):
    dm = DTIDataModule(source="table", table_path=str(path), split=[0.5, 0.25, 0.25], seed=1, **kw)
    dm.setup("fit")
    return dm


def model(**kw):
    return Classifier(MLP(5, [8], 3), functools.partial(torch.optim.Adam, lr=1e-2), **kw)


def trainer(tmp_path, **kw):
    return pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=tmp_path,
        **kw,
    )


def test_dti_spec_holds_training_split_statistics_counts_and_weights(tmp_path):
    dm = datamodule(table(tmp_path / "v.csv"), class_weights=True)
    spec = dm.data_spec()
    x, y = dm.data["train"]["x"].double(), dm.data["train"]["y"]
    np.testing.assert_allclose(spec.input_mean, x.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(spec.input_std, x.std(0).numpy(), rtol=1e-12)
    counts = np.bincount(y.numpy(), minlength=3)
    assert spec.class_counts == tuple(counts)
    np.testing.assert_allclose(spec.class_weights, counts.sum() / (3 * counts), rtol=1e-12)
    np.testing.assert_allclose(spec.priors().numpy(), counts / counts.sum(), rtol=1e-6)
    assert spec.classes == ("thalamus", "corpus_callosum", "cortical_wm")


def test_spec_before_setup_is_an_error_that_says_so(tmp_path):
    dm = DTIDataModule(source="table", table_path=str(table(tmp_path / "v.csv")))
    with pytest.raises(ConfigError, match="call setup"):
        dm.data_spec()


def test_model_without_a_spec_refuses_to_train_naming_the_fix(tmp_path):
    dm = datamodule(table(tmp_path / "v.csv"))
    with pytest.raises(ConfigError, match="set_data_spec"):
        trainer(tmp_path).fit(model(), datamodule=dm)


def test_set_data_spec_standardises_inputs_with_the_spec(tmp_path):
    spec = DataSpec(classes=("a", "b", "c"), input_mean=[1, 2, 3, 4, 5], input_std=[2] * 5)
    m = model()
    m.set_data_spec(spec)
    x = torch.randn(4, 5)
    expected = m.net((x - torch.tensor([1.0, 2, 3, 4, 5])) / 2)
    torch.testing.assert_close(m(x), expected)
    assert m.class_names == ["a", "b", "c"]


def test_a_spec_with_another_number_of_classes_than_the_net_is_refused():
    with pytest.raises(ConfigError, match="2 classes"):
        model().set_data_spec(DataSpec(classes=("a", "b")))


def test_spec_travels_in_the_checkpoint_and_rebuilds_the_model(tmp_path):
    from mrinet.callbacks import RunInfoInCheckpoint

    dm = datamodule(table(tmp_path / "v.csv"), class_weights=True)
    m = model()
    spec = dm.data_spec()
    m.set_data_spec(spec)
    net = {
        "_target_": "mrinet.nets.mlp.MLP",
        "in_features": 5,
        "hidden_dims": [8],
        "num_classes": 3,
    }
    model_cfg = {
        "_target_": "mrinet.models.classifier.Classifier",
        "net": net,
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True},
    }
    t = trainer(
        tmp_path, enable_checkpointing=False, callbacks=[RunInfoInCheckpoint({"model": model_cfg})]
    )
    t.fit(m, datamodule=dm)
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    checkpoint = load_checkpoint(path)  # weights_only: the spec is plain lists
    assert DataSpec.from_dict(checkpoint["data_spec"]) == spec
    rebuilt = build_model(checkpoint, path)
    assert rebuilt.data_spec == spec
    x = dm.data["test"]["x"][:16]
    torch.testing.assert_close(rebuilt(x), m.eval()(x))


def test_malformed_spec_in_a_checkpoint_names_the_checkpoint():
    with pytest.raises(CheckpointError, match="data_spec"):
        DataSpec.from_dict({"classes": ["a", "b"], "class_counts": [1]}, "x.ckpt")


def test_grouped_batches_are_the_single_batches_in_groups_of_k():
    x, y = torch.arange(50.0).reshape(25, 2), torch.arange(25)
    single = list(TensorBatches(x, y, batch_size=4, shuffle=True, seed=3))
    grouped = list(TensorBatches(x, y, batch_size=4, shuffle=True, seed=3, group=3))
    assert all(isinstance(g, BatchGroup) for g in grouped)
    assert [len(g) for g in grouped] == [3, 3, 1]  # 7 batches of 4 (the last holds 1 sample)
    flat = [batch for group in grouped for batch in group]
    assert len(flat) == len(single)
    for (xa, ya), (xb, yb) in zip(single, flat):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_model_without_grouped_steps_refuses_a_grouped_loader(tmp_path):
    dm = datamodule(table(tmp_path / "v.csv"), steps_per_batch=4)
    m = model()
    m.set_data_spec(dm.data_spec())
    with pytest.raises(ConfigError, match="steps_per_batch"):
        trainer(tmp_path, max_steps=1).fit(m, datamodule=dm)
