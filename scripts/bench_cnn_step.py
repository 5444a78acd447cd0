"""Training-step throughput of ConvNet against its plain implementation, measured in one run.

The plain implementation is the same network (same weights) with the first layer a plain
`nn.Conv2d` and the input made channels-last as before (a no-op on 1-channel images, so it
ran NCHW). Steps of the two alternate so that load from other processes hits both alike.

    PYTHONPATH=src python scripts/bench_cnn_step.py                 # default config (batch norm)
    PYTHONPATH=src python scripts/bench_cnn_step.py --norm group    # the group-norm variant
The last line is the speed-up (fast / plain images per second); the median of the ratios of
neighbouring steps is the more robust figure on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mrinet.nets.cnn import ConvNet


def plain_reference(net: ConvNet) -> ConvNet:
    """A copy of `net` computing the same function the plain way (nn.Conv2d stem, old layout)."""
    ref = copy.deepcopy(net)
    stem = ref.features[0][0]
    plain = nn.Conv2d(
        stem.in_channels,
        stem.out_channels,
        stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        bias=stem.bias is not None,
    )
    plain.load_state_dict(stem.state_dict())
    ref.features[0][0] = plain
    ref.memory_format = torch.channels_last if net.channels_last else torch.contiguous_format
    return ref


def step_seconds(
    net: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """Wall time of one training step: forward, cross-entropy, backward, Adam update."""
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(images), labels).backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="batch", choices=["batch", "group", "none"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per network")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    fast = ConvNet(norm=args.norm)  # configs/model/net/cnn.yaml defaults
    plain = plain_reference(fast)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 1, args.size, args.size, generator=gen)
    labels = torch.randint(0, 2, (args.batch,), generator=gen)
    with torch.no_grad():
        difference = (fast(images) - plain(images)).abs().max().item()
    nets = {"plain": plain, "fast": fast}
    opts = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, net in nets.items()}
    times: dict[str, list[float]] = {name: [] for name in nets}
    for step in range(args.warmup + args.steps):
        for name, net in nets.items():
            seconds = step_seconds(net, opts[name], images, labels)
            if step >= args.warmup:
                times[name].append(seconds)
    rate = {name: args.batch / statistics.median(t) for name, t in times.items()}
    print(
        f"ConvNet norm={args.norm} batch={args.batch} {args.size}x{args.size} "
        f"threads={args.threads}; max |logit difference| before training {difference:.1e}"
    )
    for name, t in times.items():
        print(
            f"{name:5s}: {rate[name]:6.1f} images/s (median of {len(t)} steps, "
            f"{1e3 * statistics.median(t):.0f} ms, min {1e3 * min(t):.0f} ms)"
        )
    paired = statistics.median(p / f for p, f in zip(times["plain"], times["fast"], strict=True))
    print(
        f"speed-up fast/plain: {rate['fast'] / rate['plain']:.2f}x (ratio of medians), "
        f"{paired:.2f}x (median of step-by-step ratios)"
    )


if __name__ == "__main__":
    main()
