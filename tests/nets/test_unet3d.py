"""The 3-D U-Net: per-voxel logits of the input's size, and the same rule wherever a voxel is."""

from __future__ import annotations

import pytest
import torch

from mrinet.errors import ConfigError
from mrinet.nets.unet3d import UNet3d


@pytest.mark.parametrize("size", [(8, 8, 8), (9, 13, 6), (5, 7, 11)])
def test_logits_have_the_input_size_whatever_the_size(size):
    net = UNet3d(5, 3, width=4, depth=2).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 5, *size))
    assert out.shape == (2, 3, *size)


def test_a_shifted_volume_gives_shifted_logits():
    """Convolutions share weights across positions: a volume moved by 4 voxels (a multiple of
    the 2^depth pooling grid) gets the same logits, moved, away from the zero-padded edges."""
    torch.manual_seed(0)
    net = UNet3d(2, 3, width=4, depth=2).eval()
    x = torch.zeros(1, 2, 40, 40, 40)
    x[..., 8:32, 8:32, 8:32] = torch.randn(1, 2, 24, 24, 24)
    shifted = torch.roll(x, shifts=4, dims=2)
    with torch.no_grad():
        a, b = net(x), net(shifted)
    assert torch.allclose(
        torch.roll(a, shifts=4, dims=2)[..., 14:26, 14:26, 14:26],
        b[..., 14:26, 14:26, 14:26],
        atol=1e-5,
    )


def test_gradients_reach_every_parameter():
    net = UNet3d(5, 3, width=4, depth=2)
    net(torch.randn(1, 5, 12, 12, 12)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_sizes_name_the_key():
    with pytest.raises(ConfigError, match=r"model\.net"):
        UNet3d(5, 3, width=0)
