"""ConvNet and DenseNet: output shapes, options, and parameter counts against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrinet.nets.cnn import (
    ConvNet,
    DenseNet,
    conv_layer_parameters,
    dense_layer_parameters,
    parameter_counts,
)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("pooling", ["stride", "max", "avg"])
def test_convnet_maps_images_to_logits(norm, pooling):
    net = ConvNet(num_classes=3, channels=[4, 8], norm=norm, pooling=pooling, dropout=0.1)
    assert net(torch.randn(2, 1, 64, 48)).shape == (2, 3)
    assert net(torch.randn(2, 64, 48)).shape == (2, 3)  # (B, H, W) gets a channel axis


def test_convnet_halves_the_resolution_per_stage():
    for pooling in ("stride", "max"):
        net = ConvNet(channels=[4, 8, 8], pooling=pooling)
        assert net.features(torch.randn(1, 1, 320, 320)).shape == (1, 8, 40, 40)


def test_convnet_parameter_counts_match_the_closed_form():
    net = ConvNet(in_channels=1, num_classes=2, channels=[16, 32], kernel_size=5, norm="none")
    counts = parameter_counts(net)
    assert counts["features.0.0"] == conv_layer_parameters(1, 16, 5) == 5 * 5 * 16 + 16
    assert counts["features.1.0"] == conv_layer_parameters(16, 32, 5)
    assert counts["head"] == dense_layer_parameters(32, 2)
    assert counts["total"] == sum(p.numel() for p in net.parameters())
    batch = parameter_counts(ConvNet(channels=[16, 32], kernel_size=5, norm="batch"))
    assert batch["features.0.0"] == 5 * 5 * 16  # no conv bias before a norm layer
    assert batch["features.0.1"] == 2 * 16  # BatchNorm scale and shift


def test_the_lectures_dense_versus_conv_comparison():
    assert dense_layer_parameters(320 * 320, 320 * 320) == 320**4 + 320**2  # ~1.05e10
    assert conv_layer_parameters(1, 1, 3) == 10
    reference = nn.Conv2d(1, 1, 3)
    assert conv_layer_parameters(1, 1, 3) == sum(p.numel() for p in reference.parameters())


def test_densenet_on_flattened_images():
    net = DenseNet(image_size=(32, 24), hidden_dims=[16, 8], num_classes=2)
    assert net(torch.randn(5, 1, 32, 24)).shape == (5, 2)
    counts = parameter_counts(net)
    assert counts["mlp.layers.0"] == dense_layer_parameters(32 * 24, 16)
    assert counts["total"] == (32 * 24 * 16 + 16) + (16 * 8 + 8) + (8 * 2 + 2)
    with pytest.raises(ValueError, match="built for"):
        net(torch.randn(1, 1, 24, 32))


@pytest.fixture
def one_thread():
    """Two threads on a shared 2-core machine can be 10x slower than one for tiny convs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_convnet_learns_to_separate_two_textures(one_thread):
    gen = torch.Generator().manual_seed(0)
    smooth = (
        torch.randn(32, 1, 4, 4, generator=gen).repeat_interleave(4, -1).repeat_interleave(4, -2)
    )
    noisy = torch.randn(32, 1, 16, 16, generator=gen)
    x, y = torch.cat([smooth, noisy]), torch.cat([torch.zeros(32), torch.ones(32)]).long()
    torch.manual_seed(0)
    net = ConvNet(channels=[8, 8], norm="batch")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() > 0.95


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="pooling"):
        ConvNet(pooling="median")
    with pytest.raises(ValueError, match="odd"):
        ConvNet(kernel_size=4)
