"""Training throughput: whole mrinet epochs of the real experiments vs hand-written PyTorch loops.

Default run (whole epochs, the way a user waits for them): for `dti_mlp` (1e6 voxel rows from a
Parquet table, batch 4096), `dti_mlp_context` (its context features on the tiny cohort) and
`recon_quality_cnn` (the tiny simulated k-space set), mrinet's real stack is composed from the
experiment config (Trainer, every configured callback, TensorBoard logger, metrics, decision
tuning, figures, checkpoints) and each epoch is timed from one `on_train_epoch_start` to the
next (the last to `on_train_end`): training, validation, epoch metrics, callbacks, figures,
checkpoint saves, logging. A hand loop runs the same net, optimizer, batches (the same loaders
for the CNN) and the same training and validation forward passes. One more mrinet run with
Lightning's SimpleProfiler prints what each part of the epoch costs (per hook and callback).
Ratios (hand loop epoch / mrinet epoch, so 1.0 = as fast as the hand loop) are printed last:
the median epoch and the mean epoch (the mean includes the epochs that draw figures), in wall
time and in the process's CPU time (steadier than wall time on a shared machine).
`--device cuda` runs both on the GPU (mrinet with `trainer=gpu`), `--precision bf16-mixed` or
`16-mixed` sets mrinet's `trainer.precision` and the hand loop's autocast (and fp16's scaler).

`--batch-sizes` runs the older training-only comparison instead (validation excluded, the
dti_mlp table at those batch sizes; `--device cuda` runs both loops on the GPU).

    python scripts/bench_train_throughput.py                        # whole epochs, < 3 min
    python scripts/bench_train_throughput.py --experiments dti_mlp --repeats 5
    python scripts/bench_train_throughput.py --device cuda --precision bf16-mixed  # make bench-gpu
    python scripts/bench_train_throughput.py --batch-sizes 1024 4096 [--device cuda]
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
    return [
        *experiment_overrides("dti_mlp", table, out, batch_size, device),
        f"trainer.max_epochs={epochs}",
        f"paths.output_dir={out}",
        f"paths.root_dir={out}",
        "callbacks.progress_bar.kind=tqdm",
    ]


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


# ---- whole epochs of the real experiments ------------------------------------------------------
EXPERIMENTS = ("dti_mlp", "dti_mlp_context", "recon_quality_cnn")


class EpochClock(pl.Callback):
    """Wall and CPU time of whole epochs: one `on_train_epoch_start` to the next, the last one
    to `on_train_end` (validation, epoch-end metrics, callbacks, figures, checkpoints included).
    CPU time (the process's, all threads) is what the epoch cost this process: on a machine
    shared with other work it varies far less than the wall time (on a GPU it only counts the
    host's share). Every reading waits for the GPU's queued work first."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def _mark(self, pl_module) -> None:
        _synchronize(pl_module.device)
        self.marks.append((time.perf_counter(), time.process_time()))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._mark(pl_module)

    @property
    def seconds(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])]

    @property
    def cpu_seconds(self) -> list[float]:
        return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])]


def experiment_overrides(
    name: str,
    table: Path,
    data_dir: Path,
    batch_size: int,
    device: str = "cpu",
    precision: str = "32-true",
) -> list[str]:
    """What differs from the experiment as shipped: the data (the table for dti_mlp, the tiny
    simulated sets for the others), and on a GPU `trainer=gpu` with `trainer.precision`."""
    if name == "dti_mlp":
        overrides = [
            "experiment=dti_mlp",
            "data.source=table",
            f"data.table_path={table}",
            "data.split=[0.98,0.01,0.01]",
            f"data.batch_size={batch_size}",
        ]
    else:
        overrides = [f"experiment={name}", "data_size=tiny", f"paths.data_dir={data_dir}"]
    if torch.device(device).type == "cuda":
        overrides.append("trainer=gpu")
    if precision != "32-true":
        overrides.append(f"trainer.precision={precision}")
    return overrides


def _precision_dtype(overrides: list[str]) -> torch.dtype | None:
    """The autocast dtype of `trainer.precision` in the overrides (None: float32)."""
    for item in overrides:
        if item.startswith("trainer.precision="):
            value = item.split("=", 1)[1]
            return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(value)
    return None


def build_run(overrides: list[str], out: Path, epochs: int):
    """(cfg, datamodule, model) as mrinet.train assembles them, data set up, model sized."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    overrides = [
        *overrides,
        f"trainer.max_epochs={epochs}",
        f"paths.output_dir={out}",
        f"paths.root_dir={out}",
        "callbacks.progress_bar.kind=tqdm",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, _convert_="all")
    model.set_data_spec(datamodule.data_spec())
    return cfg, datamodule, model


def mrinet_epochs(overrides: list[str], out: Path, epochs: int, profile: bool = False):
    """Whole-epoch (wall seconds, CPU seconds) of one mrinet fit, and the SimpleProfiler when
    `profile`."""
    from hydra.utils import instantiate
    from pytorch_lightning.profilers import SimpleProfiler

    from mrinet.run.entry import instantiate_list

    cfg, datamodule, model = build_run(overrides, out, epochs)
    clock = EpochClock()
    profiler = SimpleProfiler(dirpath=out, filename="profile") if profile else None
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*instantiate_list(cfg.callbacks), clock],
        logger=instantiate_list(cfg.logger),
        profiler=profiler,
        _convert_="all",
    )
    trainer.fit(model, datamodule=datamodule)
    return (clock.seconds, clock.cpu_seconds), profiler


def _val_forward(net, batches, device: torch.device, autocast) -> None:
    """The hand loop's validation: forward passes and the predicted classes, nothing else."""
    net.eval()
    with torch.no_grad(), autocast():
        for x, _ in batches:
            net(x.to(device, non_blocking=True)).argmax(1)
    net.train()


def hand_epochs(
    overrides: list[str], out: Path, epochs: int, device: str = "cpu"
) -> tuple[list[float], list[float]]:
    """Whole-epoch (wall seconds, CPU seconds) of a hand loop over the same data, net,
    optimizer and batches, on `device`, under autocast where the overrides set a mixed
    `trainer.precision` (16-mixed: with a gradient scaler): rows (the DTI tables) shuffled and
    sliced per epoch on the device, the CNN's own loaders as they are."""
    import contextlib
    import functools

    device = torch.device(device)
    _, datamodule, model = build_run(overrides, out, epochs)
    net = model.net.to(device)
    optimizer = model.optimizer_factory(params=net.parameters())
    weight = model.class_weight.to(device) if model.class_weight.numel() else None
    dtype = _precision_dtype(overrides)
    autocast = (
        functools.partial(torch.autocast, device.type, dtype=dtype)
        if dtype is not None
        else contextlib.nullcontext
    )
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        with autocast():
            loss = F.cross_entropy(net(xb), yb, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def clock() -> tuple[float, float]:
        _synchronize(device)
        return time.perf_counter(), time.process_time()

    wall, cpu = [], []
    if hasattr(datamodule, "data") and "x" in datamodule.data.get("train", {}):
        train, val = datamodule.data["train"], datamodule.data["val"]
        mean, std = train["x"].mean(0), train["x"].std(0).clamp(min=1e-12)
        x, y = ((train["x"] - mean) / std).to(device), train["y"].to(device)
        xv = ((val["x"] - mean) / std).to(device)
        batch = datamodule.batch_size if hasattr(datamodule, "batch_size") else 4096
        for epoch in range(epochs):
            start = clock()
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
            order = order.to(device)
            xs, ys = x[order], y[order]
            for i in range(0, len(xs), batch):
                step(xs[i : i + batch], ys[i : i + batch])
            vb = getattr(datamodule, "eval_batch_size", batch)
            batches = [(xv[i : i + vb], None) for i in range(0, len(xv), vb)]
            _val_forward(net, batches, device, autocast)
            end = clock()
            wall.append(end[0] - start[0])
            cpu.append(end[1] - start[1])
        return wall, cpu
    train_loader, val_loader = datamodule.train_dataloader(), datamodule.val_dataloader()
    for _ in range(epochs):
        start = clock()
        for xb, yb, *_ in train_loader:
            step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
        _val_forward(net, ((b[0], b[1]) for b in val_loader), device, autocast)
        end = clock()
        wall.append(end[0] - start[0])
        cpu.append(end[1] - start[1])
    return wall, cpu


def profile_table(profiler, epochs: int, top: int = 14) -> list[str]:
    """Lines: the costliest profiled actions, seconds per epoch and share of the epoch."""
    totals = {a: sum(d) for a, d in profiler.recorded_durations.items()}
    epoch = totals.get("run_training_epoch", sum(totals.values())) / max(epochs, 1)
    rows = sorted(totals.items(), key=lambda kv: -kv[1])
    lines = [f"    {'action (nested: a parent includes its children)':<78} s/epoch  share"]
    for action, total in rows[:top]:
        name = action if len(action) <= 78 else action[:75] + "..."
        lines.append(f"    {name:<78} {total / epochs:7.3f}  {total / epochs / epoch:5.1%}")
    return lines


def whole_epochs(args) -> dict[str, tuple[float, float]]:
    """Run the whole-epoch comparison; returns {experiment: (median, mean, CPU-time median,
    CPU-time mean ratio)}."""
    import os

    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "voxels.parquet"
        if "dti_mlp" in args.experiments:
            voxel_table(table, args.voxels)
        data_dir = Path(args.data_dir)
        for name in args.experiments:
            overrides = experiment_overrides(
                name, table, data_dir, args.batch_size, args.device, args.precision
            )
            hand, ours, hand_cpu, ours_cpu = [], [], [], []
            for r in range(args.repeats):  # interleaved: both see the same load
                out = Path(tmp) / f"{name}-{r}"
                (wall, cpu), _ = mrinet_epochs(overrides, out / "mrinet", args.epochs)
                ours.append(wall)
                ours_cpu.append(cpu)
                wall, cpu = hand_epochs(overrides, out / "hand", args.epochs, args.device)
                hand.append(wall)
                hand_cpu.append(cpu)
            _, profiler = mrinet_epochs(overrides, Path(tmp) / f"{name}-prof", args.epochs, True)
            med_o = statistics.median(statistics.median(s) for s in ours)
            med_h = statistics.median(statistics.median(s) for s in hand)
            mean_o = statistics.median(statistics.fmean(s) for s in ours)
            mean_h = statistics.median(statistics.fmean(s) for s in hand)
            cpu_o = statistics.median(statistics.median(s) for s in ours_cpu)
            cpu_h = statistics.median(statistics.median(s) for s in hand_cpu)
            cpu_mean_o = statistics.median(statistics.fmean(s) for s in ours_cpu)
            cpu_mean_h = statistics.median(statistics.fmean(s) for s in hand_cpu)
            ratios[name] = (med_h / med_o, mean_h / mean_o, cpu_h / cpu_o, cpu_mean_h / cpu_mean_o)
            load = os.getloadavg()[0]
            print(f"\n{name}: {args.epochs} epochs x {args.repeats} repeats, load {load:.1f}")
            print(f"  epoch (median): hand loop {med_h:.3f} s, mrinet {med_o:.3f} s")
            print(
                f"  epoch (mean, figure epochs included): hand {mean_h:.3f} s, mrinet {mean_o:.3f} s"
            )
            print(
                f"  CPU time per epoch (median / mean): hand {cpu_h:.3f} / {cpu_mean_h:.3f} s, "
                f"mrinet {cpu_o:.3f} / {cpu_mean_o:.3f} s"
            )
            print(f"  mrinet epochs (first repeat): {', '.join(f'{v:.3f}' for v in ours[0])} s")
            print("  where mrinet's epoch goes (SimpleProfiler, one more run):")
            print("\n".join(profile_table(profiler, args.epochs)))
    print()
    where = ""
    if torch.device(args.device).type == "cuda":
        where = f" on {torch.cuda.get_device_name(torch.device(args.device))}, {args.precision}"
    for name, (median, mean, cpu, cpu_mean) in ratios.items():
        print(
            f"whole-epoch ratio hand/mrinet {name}{where}: median {median:.2f}x, mean {mean:.2f}x"
            f" (CPU time: median {cpu:.2f}x, mean {cpu_mean:.2f}x)"
        )
    return ratios


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns {experiment: (median, mean, CPU-time median, CPU-time mean)
    epoch ratio hand/mrinet}, or with --batch-sizes the training-only ratio mrinet / hand loop
    per batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=None, help="whole epochs: 6; else 3")
    parser.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=EXPERIMENTS)
    parser.add_argument("--batch-size", type=int, default=4096, help="dti_mlp's, whole epochs")
    parser.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parents[1] / "data"),
        help="where the tiny simulated sets are cached (default: the repository's data/)",
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", help="training-only comparison at these sizes"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="whole epochs: 2; else 1")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both loops on it)")
    parser.add_argument(
        "--precision",
        default="32-true",
        choices=("32-true", "bf16-mixed", "16-mixed"),
        help="whole epochs: mrinet's trainer.precision, the hand loop's autocast (CPU: bf16)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch build sees no CUDA GPU (torch.cuda.is_available())")
    torch.set_num_threads(args.threads)
    if not args.batch_sizes:
        args.epochs, args.repeats = args.epochs or 6, args.repeats or 2
        return whole_epochs(args)
    args.epochs, args.repeats = args.epochs or 3, args.repeats or 1
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
