"""Nets are built from their own arguments plus the data's sizes; old checkpoints still load."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mrinet.data.contract import DataSpec
from mrinet.errors import ConfigError
from mrinet.models.classifier import Classifier
from mrinet.models.net_builder import build_net, recorded_net_config
from mrinet.nets.cnn import ConvNet, DenseNet
from mrinet.nets.mlp import MLP
from mrinet.nets.unet3d import UNet3d
from mrinet.run.checkpoints import build_model, load_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "main_checkpoints"


def adam(params):
    return torch.optim.Adam(params, lr=1e-3)


class NoInputs(nn.Module):
    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.out = nn.Linear(width, num_classes)


class NoClasses(nn.Module):
    def __init__(self, in_features: int, width: int = 4):
        super().__init__()
        self.out = nn.Linear(in_features, width)


class WrongWidth(nn.Module):
    """Ignores num_classes: always 7 outputs."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.out = nn.Linear(in_features, 7)

    def forward(self, x):
        return self.out(x)


def test_voxel_net_gets_in_features_and_num_classes_from_the_spec():
    spec = DataSpec(classes=("a", "b", "c"), input_shape=(11,))
    net, sizes = build_net(functools.partial(MLP, hidden_dims=[4]), spec)
    assert sizes == {"in_features": 11, "num_classes": 3}
    assert net.layers[0].in_features == 11 and net.layers[-1].out_features == 3


def test_image_and_volume_nets_get_channels_and_image_size():
    image = DataSpec(classes=("ref", "acc"), input_shape=(1, 24, 20))
    net, sizes = build_net(functools.partial(DenseNet, hidden_dims=[3]), image)
    assert sizes == {"in_channels": 1, "num_classes": 2, "image_size": [24, 20]}
    assert net(torch.zeros(2, 1, 24, 20)).shape == (2, 2)
    _, sizes = build_net(functools.partial(ConvNet, channels=[4]), image)
    assert sizes == {"in_channels": 1, "num_classes": 2}
    volume = DataSpec(classes=("a", "b", "c"), input_shape=(5, None, None, None))
    unet, sizes = build_net(functools.partial(UNet3d, width=2, depth=1), volume)
    assert sizes == {"in_channels": 5, "num_classes": 3}
    assert unet(torch.zeros(1, 5, 4, 4, 4)).shape == (1, 3, 4, 4, 4)


def test_a_size_the_config_sets_must_agree_with_the_data():
    spec = DataSpec(classes=("a", "b"), input_shape=(5,))
    build_net(functools.partial(MLP, hidden_dims=[4], in_features=5), spec)  # agrees: fine
    with pytest.raises(ConfigError, match=r"model\.net\.in_features=4 but the data gives 5"):
        build_net(functools.partial(MLP, hidden_dims=[4], in_features=4), spec)


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (NoInputs, r"NoInputs takes no in_features or in_channels"),
        (NoClasses, r"takes no num_classes"),
        (WrongWidth, r"WrongWidth returns \(2, 7\), but the data has 2 classes"),
    ],
)
def test_a_net_mrinet_cannot_size_or_read_is_refused_with_the_fix(net, message):
    spec = DataSpec(classes=("a", "b"), input_shape=(5,))
    with pytest.raises(ConfigError, match=message) as info:
        build_net(functools.partial(net, num_classes=2) if net is NoInputs else net, spec)
    assert info.value.where.startswith("model.net") and info.value.fix


def test_wrong_width_of_a_volume_net_is_caught_on_the_first_batch():
    class WrongMaps(nn.Module):
        """Its last layer has num_classes outputs, but it returns twice as many maps."""

        def __init__(self, in_channels: int, num_classes: int):
            super().__init__()
            self.conv = nn.Conv3d(in_channels, num_classes, 1)

        def forward(self, x):
            return torch.cat([self.conv(x), self.conv(x)], dim=1)

    model = Classifier(WrongMaps, adam)
    model.set_data_spec(DataSpec(classes=("a", "b"), input_shape=(3, None, None, None)))
    batch = (torch.zeros(1, 3, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"returns \(1, 4, 2, 2, 2\), but the data has 2"):
        model._step(batch, "val")


def test_classifier_builds_its_net_when_the_data_spec_arrives():
    model = Classifier(functools.partial(MLP, hidden_dims=[6]), adam)
    assert model.net is None
    model.set_data_spec(DataSpec(classes=("a", "b", "c", "d"), input_shape=(9,)))
    assert model.net.layers[0].in_features == 9 and model.num_classes == 4
    assert model(torch.zeros(2, 9)).shape == (2, 4)
    recorded = recorded_net_config(
        {"_target_": "mrinet.nets.mlp.MLP", "_partial_": True, "hidden_dims": [6]},
        model.net_sizes,
    )
    assert recorded == {
        "_target_": "mrinet.nets.mlp.MLP",
        "hidden_dims": [6],
        "in_features": 9,
        "num_classes": 4,
    }


def test_data_spec_keeps_its_input_shape_and_reads_specs_without_one():
    spec = DataSpec(classes=("a",), input_shape=(4, None, None, None))
    assert DataSpec.from_dict(spec.to_dict()) == spec and spec.num_inputs == 4
    old = {k: v for k, v in spec.to_dict().items() if k != "input_shape"}
    assert DataSpec.from_dict(old).input_shape is None
    with pytest.raises(ValueError, match="input_shape"):
        DataSpec(classes=("a",), input_shape=(None, 3))


@pytest.mark.parametrize("name", ["dti_mlp", "dti_unet"])
def test_checkpoints_written_before_net_groups_load_and_predict_the_same(name):
    """Fixtures: tiny runs of the code before model/net groups (net config with in_features /
    in_channels and num_classes), and that code's probabilities on fixed inputs."""
    expected = json.loads((FIXTURES / "expected.json").read_text())[name]
    model = build_model(load_checkpoint(FIXTURES / f"{name}.ckpt"))
    x = torch.tensor(expected["x"])
    with torch.no_grad():
        proba = model.predict_proba(x)
    torch.testing.assert_close(proba, torch.tensor(expected["proba"]), rtol=0, atol=1e-6)
    assert model.predict_classes(x).tolist() == expected["classes"]


def test_data_without_an_input_shape_needs_the_width_in_the_net_config():
    spec = DataSpec(classes=("a", "b"))  # a DataModule written before input_shape
    with pytest.raises(ConfigError, match=r"does not say its input width") as info:
        build_net(functools.partial(MLP, hidden_dims=[4]), spec)
    assert (
        info.value.where == "model.net.in_features" and "input_shape=(features,)" in info.value.fix
    )
    net, sizes = build_net(functools.partial(MLP, hidden_dims=[4], in_features=6), spec)
    assert sizes == {"num_classes": 2} and net.layers[0].in_features == 6
