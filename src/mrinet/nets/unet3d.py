"""A small 3-D U-Net: feature volumes (B, F, X, Y, Z) -> class logits per voxel (B, C, X, Y, Z).

The segmentation CNN beside the lecture's MLP (issue 13): every voxel sees its neighbourhood
through the same convolutions wherever it is, so what is learned is a local rule ("the callosal
slab is the fibres straight under the interhemispheric fissure"), not the midlines of the few
training subjects. Each level: two 3^3 convolutions with batch norm and ReLU; `depth` max-pool
halvings on the way down, transposed convolutions and skip connections on the way up.
Receptive field with depth 2: 44 voxels (88 mm at 2 mm). Inputs of any size: a side that is not
a multiple of 2^depth is zero-padded inside `forward` and the logits cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrinet.errors import ConfigError


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3^3 convolutions (same size), each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet3d(nn.Module):
    """(B, in_channels, X, Y, Z) -> logits (B, num_classes, X, Y, Z).

    width: channels of the first level (doubled per level); depth: number of halvings.
    """

    dense_output = True  # logits per voxel: predict feeds whole volumes (mrinet.predict)

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 2):
        super().__init__()
        if int(depth) < 0 or int(width) < 1 or int(in_channels) < 1 or int(num_classes) < 1:
            raise ConfigError(
                f"UNet3d(in_channels={in_channels}, num_classes={num_classes}, width={width}, "
                f"depth={depth}): sizes must be >= 1 and depth >= 0",
                "model.net",
                "e.g. model.net.width=16 model.net.depth=2",
            )
        self.depth = int(depth)
        widths = [int(width) * 2**level for level in range(self.depth + 1)]
        self.down = nn.ModuleList(
            conv_block(c_in, c_out) for c_in, c_out in zip([int(in_channels), *widths], widths)
        )
        self.upsample = nn.ModuleList(
            nn.ConvTranspose3d(widths[level + 1], widths[level], 2, stride=2)
            for level in reversed(range(self.depth))
        )
        self.up = nn.ModuleList(
            conv_block(2 * widths[level], widths[level]) for level in reversed(range(self.depth))
        )
        self.head = nn.Conv3d(widths[0], int(num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        multiple = 2**self.depth
        pad = [(-n) % multiple for n in size]
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool3d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up):
            x = block(torch.cat([upsample(x), skips.pop()], dim=1))
        logits = self.head(x)
        return logits[:, :, : size[0], : size[1], : size[2]]
