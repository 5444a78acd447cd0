"""SpaceToDepthConv2d equals nn.Conv2d (autograd of F.conv2d is the oracle); ConvNet unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrinet.nets.cnn import ConvNet
from mrinet.nets.space_to_depth import SpaceToDepthConv2d, space_to_depth


def _plain_and_fast(x, layer):
    """Outputs and gradients (wrt input, weight, bias) of the layer and of F.conv2d, same weights."""
    results = []
    for use_layer in (True, False):
        inp = x.detach().clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        if use_layer:
            out = layer(inp)
        else:
            out = F.conv2d(inp, layer.weight, layer.bias, stride=2, padding=layer.padding)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
        out.backward(upstream)
        bias_grad = None if layer.bias is None else layer.bias.grad.clone()
        results.append((out.detach(), inp.grad, layer.weight.grad.clone(), bias_grad))
    return results


@pytest.mark.parametrize(
    ("batch", "in_channels", "kernel_size", "height", "width", "channels_last"),
    [
        (2, 1, 3, 16, 12, False),
        (1, 1, 3, 8, 8, True),
        (3, 3, 3, 10, 14, True),
        (2, 1, 5, 12, 16, False),
        (1, 2, 7, 14, 10, True),
        (2, 1, 3, 15, 12, False),  # odd height: plain fallback
        (1, 3, 3, 9, 7, True),  # odd both
    ],
)
@pytest.mark.parametrize("bias", [False, True])
def test_space_to_depth_conv_matches_a_plain_strided_conv_forward_and_backward(
    batch, in_channels, kernel_size, height, width, channels_last, bias
):
    torch.manual_seed(0)
    layer = SpaceToDepthConv2d(
        in_channels, 5, kernel_size, bias=bias, channels_last=channels_last
    ).double()
    x = torch.randn(batch, in_channels, height, width, dtype=torch.float64)
    (out, gx, gw, gb), (ref, rgx, rgw, rgb) = _plain_and_fast(x, layer)
    assert out.shape == ref.shape == (batch, 5, (height + 1) // 2, (width + 1) // 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx, rgx, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, rgw, rtol=0, atol=1e-12)
    if bias:
        torch.testing.assert_close(gb, rgb, rtol=0, atol=1e-12)


def test_space_to_depth_conv_in_float32_is_within_rounding_of_the_plain_conv():
    torch.manual_seed(1)
    layer = SpaceToDepthConv2d(1, 16, 3, bias=False, channels_last=True)
    x = torch.randn(2, 1, 64, 48)
    (out, _, gw, _), (ref, _, rgw, _) = _plain_and_fast(x, layer)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rgw, rtol=1e-4, atol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_space_to_depth_matches_pixel_unshuffle_in_both_layouts():
    x = torch.randn(2, 3, 6, 8)
    expected = F.pixel_unshuffle(x, 2)
    assert torch.equal(space_to_depth(x), expected)
    nhwc = space_to_depth(x, channels_last=True)
    assert torch.equal(nhwc, expected)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)


def test_space_to_depth_conv_keeps_the_nn_conv2d_parameters_and_init():
    torch.manual_seed(3)
    plain = nn.Conv2d(1, 8, 3, stride=2, padding=1)
    torch.manual_seed(3)
    fast = SpaceToDepthConv2d(1, 8, 3)
    assert list(fast.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    assert torch.equal(fast.weight, plain.weight) and torch.equal(fast.bias, plain.bias)
    with pytest.raises(ValueError, match="odd size"):
        SpaceToDepthConv2d(1, 8, 4)


def _old_style_convnet(**kwargs) -> ConvNet:
    """ConvNet as it was before: a plain nn.Conv2d first layer (same construction order)."""
    net = ConvNet(**kwargs)
    stem = net.features[0][0]
    plain = nn.Conv2d(
        stem.in_channels,
        stem.out_channels,
        stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        bias=stem.bias is not None,
    )
    net.features[0][0] = plain
    net.memory_format = torch.contiguous_format
    return net


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_convnet_keeps_its_state_dict_parameter_count_and_init(norm):
    torch.manual_seed(5)
    fast = ConvNet(norm=norm, channels=[8, 16])
    assert isinstance(fast.features[0][0], SpaceToDepthConv2d)
    torch.manual_seed(5)
    old = _old_style_convnet(norm=norm, channels=[8, 16])  # reinitialised stem: reload below
    torch.manual_seed(5)
    reference = ConvNet(norm=norm, channels=[8, 16])
    assert list(fast.state_dict()) == list(old.state_dict())
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in old.parameters())
    for key, value in reference.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value), key


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_convnet_loads_an_old_style_state_dict_and_gives_the_same_logits(norm):
    torch.manual_seed(6)
    old = _old_style_convnet(norm=norm, channels=[8, 16], num_classes=3)
    x = torch.randn(4, 1, 32, 24)
    old.train()
    old(x)  # batch norm running statistics move away from their init
    old.eval()
    fast = ConvNet(norm=norm, channels=[8, 16], num_classes=3).eval()
    fast.load_state_dict(old.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), old(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast(x[..., :31, :]), old(x[..., :31, :]))  # odd H


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_convnet_training_gradients_match_the_old_style_network(norm):
    torch.manual_seed(8)
    fast = ConvNet(norm=norm, channels=[8, 16]).train()
    old = _old_style_convnet(norm=norm, channels=[8, 16]).train()
    old.load_state_dict(fast.state_dict())
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 1, 0])
    for net in (fast, old):
        F.cross_entropy(net(x), y).backward()
    for (name, p_fast), p_old in zip(fast.named_parameters(), old.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_old.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_group_norm_convnet_runs_nchw_and_batch_norm_channels_last():
    assert ConvNet(norm="group").memory_format == torch.contiguous_format
    assert ConvNet(norm="batch").memory_format == torch.channels_last
    assert ConvNet(norm="batch", channels_last=False).memory_format == torch.contiguous_format
    features = ConvNet(norm="batch", channels=[4]).features(torch.randn(2, 1, 16, 16))
    assert features.is_contiguous(memory_format=torch.channels_last)
