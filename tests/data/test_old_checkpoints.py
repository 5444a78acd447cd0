"""Checkpoints written before the data/ task packages record their DataModule by its old
path (`mrinet.data.dti.DTIDataModule`, `mrinet.data.dti_volumes.DTIVolumeDataModule`): the
path still passes the allowlist and builds the moved class, and old module paths resolve."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from mrinet.data.tissue.volume_module import DTIVolumeDataModule
from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.run.checkpoints import checkpoint_datamodule
from mrinet.run.trust import check_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "main_checkpoints"


@pytest.mark.parametrize(
    ("name", "recorded", "cls"),
    [
        ("dti_mlp", "mrinet.data.dti.DTIDataModule", DTIDataModule),
        ("dti_unet", "mrinet.data.dti_volumes.DTIVolumeDataModule", DTIVolumeDataModule),
    ],
)
def test_an_old_checkpoints_data_target_builds_the_moved_datamodule(name, recorded, cls):
    checkpoint = torch.load(FIXTURES / f"{name}.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["mrinet"]["data"]["_target_"] == recorded
    check_config(checkpoint["mrinet"], FIXTURES / f"{name}.ckpt", "mrinet")
    datamodule = checkpoint_datamodule(checkpoint)
    assert type(datamodule) is cls
    assert datamodule.features == list(checkpoint["mrinet"]["data"]["features"])


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("mrinet.data.spec", "DataSpec", "mrinet.data.contract"),
        ("mrinet.data.recon_quality", "ReconQualityDataModule", "mrinet.data.recon_quality.module"),
    ],
)
def test_old_module_paths_name_the_moved_classes(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )
