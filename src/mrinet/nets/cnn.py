"""Image classifiers for 2-D MR images: a configurable conv net and the lecture's dense baseline.

Both map images (B, C, H, W) or (B, H, W) to class logits (B, num_classes). The comparison of
their parameter counts is the lecture's argument for convolutions: a dense layer from a 320x320
image to a 320x320 feature map needs (320*320)^2 ~ 1e10 weights, a 3x3 convolution 9 + 1 bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mrinet.errors import check_choice
from mrinet.nets.mlp import MLP
from mrinet.nets.space_to_depth import SpaceToDepthConv2d

NORMS = ("batch", "group", "none")
POOLINGS = ("stride", "max", "avg")
GLOBAL_POOLS = ("avg", "max")
# PyTorch's channels-last GroupNorm on CPU is ~2-3x slower than the NCHW one (fwd + bwd of a
# (16, 16, 160, 160) batch: ~45 vs ~19 ms with the ReLU), more than channels-last saves in the
# convs; batch norm and no norm run fastest all channels-last (~30% per training step)
CHANNELS_LAST_NORMS = ("batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


def _as_images(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, 1, H, W); (B, C, H, W) unchanged."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W) or (B, H, W), got shape {tuple(x.shape)}")
    return x


class ConvNet(nn.Module):
    """Conv stages that halve the resolution, global pooling, one linear layer to the logits.

    Each stage is conv(kernel_size) -> norm -> ReLU, downsampled either by the conv's stride 2
    (`pooling="stride"`, ~10x faster on a small CPU than max-pooling at full resolution) or by
    a 2x2 max/avg pool after a stride-1 conv. Images are (B, 1, H, W) magnitude images.

    Speed without changing the function: a strided first conv on 1-channel images is a
    `SpaceToDepthConv2d` (same weight, ~2x faster on CPU), and `channels_last` runs the
    activations NHWC where that is faster (batch norm, no norm; group norm stays NCHW).
    `memory_format` holds the layout used.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (16, 32, 64, 64),
        kernel_size: int = 3,
        norm: str = "batch",
        pooling: str = "stride",
        dropout: float = 0.0,
        global_pool: str = "avg",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("norm", norm, NORMS),
            ("pooling", pooling, POOLINGS),
            ("global_pool", global_pool, GLOBAL_POOLS),
        ):
            check_choice(value, allowed, f"model.net.{name}")
        if not channels:
            raise ValueError("ConvNet needs at least one conv stage (channels=[...])")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvNet kernel_size={kernel_size}: use an odd size (3, 5, 7)")
        self.channels_last = channels_last
        nhwc = channels_last and norm in CHANNELS_LAST_NORMS
        self.memory_format = torch.channels_last if nhwc else torch.contiguous_format
        stages = []
        previous = int(in_channels)
        bias = norm == "none"  # a norm layer's shift makes the conv bias redundant
        for width in channels:
            stride = 2 if pooling == "stride" else 1
            if stride == 2 and previous == 1 and kernel_size >= 3:
                # oneDNN is ~3x slower on 1 input channel than on its 4-channel rearrangement
                conv: nn.Conv2d = SpaceToDepthConv2d(
                    previous, int(width), kernel_size, bias=bias, channels_last=nhwc
                )
            else:
                conv = nn.Conv2d(
                    previous,
                    int(width),
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                    bias=bias,
                )
            layers: list[nn.Module] = [
                conv,
                _norm(norm, int(width)),
                nn.ReLU(inplace=True),
            ]
            if pooling == "max":
                layers.append(nn.MaxPool2d(2))
            elif pooling == "avg":
                layers.append(nn.AvgPool2d(2))
            stages.append(nn.Sequential(*layers))
            previous = int(width)
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if global_pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(previous, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) or (B, H, W) -> logits (B, num_classes)."""
        x = _as_images(x).contiguous(memory_format=self.memory_format)
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.drop(x))


class DenseNet(nn.Module):
    """The lecture's fully connected classifier on flattened images, for comparison with ConvNet.

    (B, C, H, W) -> flatten to (B, C*H*W) -> MLP -> logits. Its first layer alone needs
    C*H*W*hidden_dims[0] weights (6.6 million for 320x320 and 64 hidden units).
    """

    def __init__(
        self,
        image_size: Sequence[int] = (320, 320),
        hidden_dims: Sequence[int] = (64,),
        num_classes: int = 2,
        in_channels: int = 1,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(image_size) != 2:
            raise ValueError(f"DenseNet image_size={list(image_size)}: give [height, width]")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        in_features = int(in_channels) * self.image_size[0] * self.image_size[1]
        self.mlp = MLP(
            in_features, hidden_dims, num_classes, activation=activation, dropout=dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) or (B, H, W) of size `image_size` -> logits (B, num_classes)."""
        x = _as_images(x)
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"DenseNet was built for {self.image_size} images, got {tuple(x.shape[-2:])}"
            )
        return self.mlp(x.flatten(1))


def parameter_counts(net: nn.Module) -> dict[str, int]:
    """Trainable parameters per layer (module name -> count) and their sum under "total"."""
    counts: dict[str, int] = {}
    for name, module in net.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
        if own:
            counts[name or type(module).__name__] = own
    counts["total"] = sum(counts.values())
    return counts


def dense_layer_parameters(in_features: int, out_features: int, bias: bool = True) -> int:
    """Weights (+ biases) of a fully connected layer: in*out (+ out)."""
    return int(in_features) * int(out_features) + (int(out_features) if bias else 0)


def conv_layer_parameters(
    in_channels: int, out_channels: int, kernel_size: int, bias: bool = True
) -> int:
    """Weights (+ biases) of a 2-D convolution: k*k*in*out (+ out), whatever the image size."""
    k = int(kernel_size)
    return k * k * int(in_channels) * int(out_channels) + (int(out_channels) if bias else 0)
