"""A stride-2 convolution computed as space-to-depth + stride-1 convolution, for speed on CPU.

A k x k, stride-2, padding k//2 convolution of an image with even H and W equals a stride-1
convolution of its 2x2 space-to-depth rearrangement (C -> 4C channels at half resolution) with
a (k+1)/2 x (k+1)/2 kernel whose taps are a fixed scatter of the k x k weight (the other taps
are zero: 7 of 16 for k = 3). oneDNN runs the original form very inefficiently when C is small
(the first layer of an image classifier: C = 1): for a (16, 1, 320, 320) batch and 16 output channels the
rearranged form takes ~17 ms forward + backward instead of ~37 ms on two CPU cores. The
parameter stays a normal (out, in, k, k) `nn.Conv2d` weight, so state_dicts, parameter counts
and initialisation are those of `nn.Conv2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _axis_taps(kernel_size: int) -> tuple[list[tuple[int, int]], int, int]:
    """Per kernel tap a in [-k//2, k//2]: (phase p, offset d - d_min) with a = 2 d + p.

    Returns the taps, the rearranged kernel size and the zero padding before the first pixel
    (the padding after it is the kernel size - 1 - that).
    """
    half = kernel_size // 2
    d_min = -((half + 1) // 2)
    d_max = half // 2
    taps = []
    for a in range(-half, half + 1):
        phase = a % 2
        taps.append((phase, (a - phase) // 2 - d_min))
    return taps, d_max - d_min + 1, -d_min


def space_to_depth_index(kernel_size: int) -> torch.Tensor:
    """Gather index (4 * n * n,) from a flattened k*k kernel (+1 zero slot at k*k).

    Entry [p, q, du, dv] (row-major over (2, 2, n, n), n the rearranged kernel size) names the
    tap of the k x k kernel that lands on phase (p, q) at offset (du, dv), or k*k for a zero.
    """
    taps, n, _ = _axis_taps(kernel_size)
    index = torch.full((2, 2, n, n), kernel_size * kernel_size, dtype=torch.long)
    for i, (p, du) in enumerate(taps):
        for j, (q, dv) in enumerate(taps):
            index[p, q, du, dv] = i * kernel_size + j
    return index.flatten()


def space_to_depth(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(B, C, H, W) with even H, W -> (B, 4C, H/2, W/2); channel c*4 + p*2 + q = x[..., p::2, q::2].

    Same layout as `F.pixel_unshuffle(x, 2)` (~3x slower on a 2-core CPU); `channels_last`
    writes the result in NHWC memory order in the same single copy.
    """
    b, c, h, w = x.shape
    if channels_last:
        blocks = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c)
        return (
            blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)
        )
    blocks = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


class SpaceToDepthConv2d(nn.Conv2d):
    """`nn.Conv2d(in, out, k, stride=2, padding=k//2)` evaluated as space-to-depth + stride-1 conv.

    Same parameters, initialisation, state_dict and outputs (to float rounding, ~1e-6) as the
    plain layer; images (B, C, H, W) with odd H or W, or on a GPU (where cuDNN has no such
    weakness; not measured here), fall back to the plain `nn.Conv2d` computation.
    `channels_last` makes the output NHWC in memory (the rearrangement decides the layout,
    since a 1-channel input has none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2, bias=bias
        )
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"SpaceToDepthConv2d kernel_size={kernel_size}: use an odd size >= 3")
        self.channels_last = channels_last
        _, self._rearranged_size, self._pad_before = _axis_taps(kernel_size)
        # not persistent: the state_dict stays that of nn.Conv2d
        self.register_buffer("_tap_index", space_to_depth_index(kernel_size), persistent=False)

    def rearranged_weight(self) -> torch.Tensor:
        """The (out, 4 * in, n, n) stride-1 weight: a scatter of `self.weight` (differentiable)."""
        out_ch, in_ch = self.weight.shape[:2]
        n = self._rearranged_size
        padded = F.pad(self.weight.flatten(2), (0, 1))  # slot k*k is the zero tap
        return padded[:, :, self._tap_index].reshape(out_ch, in_ch * 4, n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> (B, out, ceil(H/2), ceil(W/2)), as `nn.Conv2d` computes."""
        if x.ndim != 4 or x.shape[-2] % 2 or x.shape[-1] % 2 or x.device.type != "cpu":
            return super().forward(x)  # the rearrangement pays off on CPU (oneDNN) only
        before = self._pad_before
        after = self._rearranged_size - 1 - before
        z = F.pad(space_to_depth(x, self.channels_last), (before, after, before, after))
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        return F.conv2d(z, self.rearranged_weight(), self.bias)
