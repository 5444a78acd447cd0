"""Training throughput: mrinet's DTI MLP run vs a hand-written PyTorch loop, same process.

Both train the MLP 5-64-64-3 with Adam on the same voxel tensors (default 1e6 voxels, 3 epochs).
The hand loop shuffles once per epoch and slices batches; mrinet runs its real Trainer, callbacks,
TensorBoard logger and metrics, fed from a Parquet voxel table. Only training epochs are timed
(validation excluded). Prints samples/s per batch size and, last, the ratios mrinet / hand loop.

`--device cuda` runs both on the GPU: the hand loop keeps the voxel tensors and the MLP on the
device (shuffles there too), mrinet runs with `trainer=gpu` (Lightning moves each loader batch
to the device); the clocks synchronise the device before they are read.

    python scripts/bench_train_throughput.py [--voxels 1000000] [--epochs 3] [--batch-sizes 1024 4096]
    python scripts/bench_train_throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

MEANS = np.array(
    [[898, 0.22, 1.07, 1.33, 0.94], [1007, 0.68, 0.39, 0.72, 0.22], [867, 0.38, 0.58, 0.82, 0.45]]
)


def voxel_table(path: Path, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (MEANS[y] * (1 + 0.15 * rng.normal(size=(n, 5)))).astype(np.float32)
    x[:, 1] = x[:, 1].clip(0.0, 1.0)
    subjects = rng.integers(0, 100, n).astype(str)
    frame = pd.DataFrame(x, columns=["T1w", "FA", "MD", "AD", "RD"]).assign(
        label=y + 1, subject=subjects
    )
    frame.to_parquet(path)
    return torch.from_numpy(x), torch.from_numpy(y)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so the wall clock reads finished work (CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Samples/s of the plainest correct loop: shuffle per epoch, slice, Adam step.

    x (N, 5) float32, y (N,) int64; both and the MLP live on `device` for the whole run.
    """
    from mrinet.nets.mlp import MLP

    device = torch.device(device)
    torch.manual_seed(seed)
    x, y = x.to(device), y.to(device)
    x = (x - x.mean(0)) / x.std(0)
    net = MLP(5, [64, 64], 3).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    _synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        order = order.to(device)
        xs, ys = x[order], y[order]
        for i in range(0, len(xs), batch_size):
            loss = F.cross_entropy(net(xs[i : i + batch_size]), ys[i : i + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _synchronize(device)
    return epochs * len(x) / (time.perf_counter() - start)


class EpochTimer(pl.Callback):
    """Wall time of the training part of every epoch (validation excluded).

    Lightning runs the epoch's validation inside the training epoch (after its last batch,
    before `on_train_epoch_end`), with `trainer.training` False, so the clock pauses from
    `on_validation_start` to `on_validation_end`. It stops at the callbacks'
    `on_train_epoch_end`; the module's own hook runs after the callbacks' (it turns the
    epoch's confusion counts into logged training metrics) and is timed and added.
    On a GPU every clock reading waits for the device's queued work first.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        hook = pl_module.on_train_epoch_end

        def timed_hook() -> None:
            start = self._clock(pl_module)
            hook()
            self.seconds[-1] += self._clock(pl_module) - start

        pl_module.on_train_epoch_end = timed_hook

    @staticmethod
    def _clock(pl_module: pl.LightningModule) -> float:
        _synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._elapsed, self._t0 = 0.0, self._clock(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._elapsed += self._clock(pl_module) - self._t0

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._t0 = self._clock(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(self._elapsed + self._clock(pl_module) - self._t0)


def run_overrides(
    table: Path, batch_size: int, epochs: int, out: Path, device: str = "cpu"
) -> list[str]:
    """The Hydra overrides of mrinet's run: `experiment=dti_mlp` on the table, on `device`."""
    overrides = [
        "experiment=dti_mlp",
        "data.source=table",
        f"data.table_path={table}",
        "data.split=[0.98,0.01,0.01]",
        f"data.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
        f"paths.output_dir={out}",
        f"paths.root_dir={out}",
        "callbacks.progress_bar.kind=tqdm",
    ]
    if torch.device(device).type == "cuda":
        overrides.append("trainer=gpu")  # accelerator gpu, 1 device, precision 32-true
    return overrides


def mrinet_run(
    table: Path, n_train: int, batch_size: int, epochs: int, out: Path, device: str = "cpu"
) -> float:
    """Samples/s of mrinet's real training stack (config, Trainer, callbacks, logger, metrics)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import instantiate_list, register_resolvers

    register_resolvers()
    overrides = run_overrides(table, batch_size, epochs, out, device)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    datamodule.setup("fit")
    model.set_data_spec(datamodule.data_spec())
    timer = EpochTimer()
    callbacks = [*instantiate_list(cfg.callbacks), timer]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=instantiate_list(cfg.logger), _convert_="all"
    )
    trainer.fit(model, datamodule=datamodule)
    n = len(datamodule.data["train"]["y"])
    return statistics.median(n / s for s in timer.seconds)


def main(argv: list[str] | None = None) -> dict[int, float]:
    """Run the benchmark; returns the ratio mrinet / hand loop per batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both loops on it)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build sees no CUDA GPU (torch.cuda.is_available())")
    torch.set_num_threads(args.threads)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "voxels.parquet"
        x, y = voxel_table(table, args.voxels)
        n_train = int(0.98 * len(x))
        for batch_size in args.batch_sizes:
            hand, ours = [], []
            for r in range(args.repeats):
                hand.append(
                    hand_loop(x[:n_train], y[:n_train], batch_size, args.epochs, device=device)
                )
                out = Path(tmp) / f"run{batch_size}-{r}"
                ours.append(mrinet_run(table, n_train, batch_size, args.epochs, out, args.device))
            h, o = statistics.median(hand), statistics.median(ours)
            ratios[batch_size] = o / h
            print(
                f"batch {batch_size}: hand loop {h:,.0f} samples/s, mrinet {o:,.0f} samples/s, ratio {o / h:.2f}x"
            )
    where = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(
        f"ratio mrinet/hand{where}: " + ", ".join(f"batch {b}: {r:.2f}x" for b, r in ratios.items())
    )
    return ratios


if __name__ == "__main__":
    main()
