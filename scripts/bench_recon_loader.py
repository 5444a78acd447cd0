"""Benchmark: recon-quality loader images/s vs the CNN's training step images/s, CPU.

Writes reconstruction files (recon/<tag>/<volume>.h5, 320x320 float32, uncompressed, as
scripts/reconstruct.py does) into a temporary folder, or uses --recon-dir. Times full training
epochs (per-epoch permutation, percentile normalisation, flips) of the ReconQualityDataModule
loader: lazy HDF5 reading with 0 and 2 workers, and the preloaded path (the default when the
images fit in RAM). Then times forward + backward + Adam of the default ConvNet at the same
batch size. Medians over epochs / steps; the machine may be shared (load average printed).
Last line: loader / training images/s for the default loader (>= 1 means the loader is never
the bottleneck).
Usage: PYTHONPATH=src python scripts/bench_recon_loader.py [--volumes 20] [--slices 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mrinet.data.recon_quality.module import ReconQualityDataModule


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def write_files(root: Path, volumes: int, slices: int, size: int) -> Path:
    """Random non-negative images for `reference` and `pics_R4` (content does not matter here)."""
    from mrinet.io.fastmri import write_reconstruction

    rng = np.random.default_rng(0)
    for tag in ("reference", "pics_R4"):
        for v in range(volumes):
            images = rng.random((slices, size, size), dtype=np.float32)
            write_reconstruction(
                root / tag / f"vol{v:03d}.h5", images, np.ones(size), {"method": "bench"}
            )
    return root


def loader_rate(recon_dir: Path, epochs: int, batch_size: int, **kwargs) -> tuple[float, int]:
    """Median images/s of training epochs after the first (warm cache, workers started)."""
    dm = ReconQualityDataModule(
        source="files",
        recon_dir=str(recon_dir),
        batch_size=batch_size,
        split=(1.0, 0.0, 0.0),
        **kwargs,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    rates = []
    for epoch in range(epochs + 1):
        loader.sampler.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for x, _ in loader:
            n += len(x)
        if epoch:  # epoch 0 warms the page cache and starts persistent workers
            rates.append(n / (time.perf_counter() - t0))
    del loader
    return statistics.median(rates), n


def training_rate(batch_size: int, size: int, steps: int) -> float:
    """Median images/s of forward + backward + Adam of the default ConvNet (configs/model/net/cnn.yaml)."""
    from mrinet.nets.cnn import ConvNet

    net = ConvNet()  # defaults = configs/model/net/cnn.yaml: [16,32,64,64], batch norm, stride
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 1, size, size, generator=gen)
    y = torch.randint(0, 2, (batch_size,), generator=gen)
    times = []
    for step in range(steps + 3):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def main(argv: list[str] | None = None) -> float:
    """Run the benchmark; returns the loader / training ratio of the default loader."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recon-dir", type=Path, help="existing recon/<tag>/<volume>.h5 folder")
    p.add_argument("--volumes", type=int, default=20, help="volumes per tag (written files)")
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per loader")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    args = p.parse_args(argv)
    print(f"torch threads {torch.get_num_threads()}, load {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        recon_dir = args.recon_dir or write_files(
            Path(tmp) / "recon", args.volumes, args.slices, args.size
        )
        cases = {
            "lazy HDF5, 0 workers": dict(preload=False, num_workers=0),
            "lazy HDF5, 2 workers": dict(preload=False, num_workers=2),
            "preloaded (default)": dict(preload="auto"),
        }
        rates = {}
        for name, kwargs in cases.items():
            rate, n = loader_rate(recon_dir, args.epochs, args.batch_size, **kwargs)
            rates[name] = rate
            print(f"{name:24s} {rate:9.0f} images/s  ({n} images/epoch, load {_load()})")
    train = training_rate(args.batch_size, args.size, args.steps)
    print(
        f"{'ConvNet training step':24s} {train:9.0f} images/s  (batch {args.batch_size}, "
        f"forward+backward+Adam, load {_load()})"
    )
    for name, rate in rates.items():
        print(f"loader/training, {name}: {rate / train:.1f}x")
    ratio = rates["preloaded (default)"] / train
    print(f"ratio loader/training (default loader): {ratio:.1f}x")
    return ratio


if __name__ == "__main__":
    main()
