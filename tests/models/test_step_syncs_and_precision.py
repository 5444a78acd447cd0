"""GPU-ready training on the CPU (issue 26, item 4): no host sync inside a training step, and
the mixed-precision paths (bf16 autocast, fp16 autocast with a gradient scaler) of the DTI MLP
and the CNN run, give finite losses and checkpoints that load into a float32 model.

A host sync (the host waiting for queued device work) has no cost on the CPU, so it is counted
instead: a TorchFunctionMode sees every tensor method call, and the ones that read a value to
the host (`item`, `float()`, `bool()`, `tolist`, ...) are counted when a training-step frame
(`training_step`, the per-batch and per-step hooks) is on the stack.
"""

from __future__ import annotations

import csv
import functools
import math
import sys

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.overrides import TorchFunctionMode

from mrinet.callbacks.saturation import SaturationMonitor
from mrinet.data.contract import DataSpec
from mrinet.data.loading.batches import TensorBatches
from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.models.classifier import Classifier
from mrinet.models.image_classifier import ImageClassifier
from mrinet.nets.cnn import ConvNet
from mrinet.nets.mlp import MLP

READS = {"item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy", "cpu"}
STEP_FRAMES = {
    "training_step",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
}


class HostReads(TorchFunctionMode):
    """Count tensor reads to the host made while a training step runs (with where from)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_steps: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        caller = sys._getframe(1)
        # not mrinet's and not counted: torch.optim reads its step count, a host tensor (also on
        # a GPU: non-capturable optimizers), and fp16's GradScaler checks for inf gradients
        # before each step (every fp16 loop does; bf16 needs no scaler)
        path = caller.f_code.co_filename.replace("\\", "/")
        if name in READS and "torch/optim/" not in path and "torch/amp/" not in path:
            frame = caller
            while frame is not None:
                if frame.f_code.co_name in STEP_FRAMES:
                    where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
                    self.in_steps.append(f"{name} in {frame.f_code.co_name} ({where})")
                    break
                frame = frame.f_back
        return func(*args, **(kwargs or {}))


def voxel_table(path, n: int = 1200) -> None:
    """n rows of the throughput benchmark's voxel table (scripts/bench_train_throughput.py)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_train_throughput.py"
    spec = importlib.util.spec_from_file_location("_bench_voxel_table", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.voxel_table(path, n)


def logged(root) -> dict[str, list[float]]:
    """Every logged value per metric name, from the CSV logger's metrics.csv."""
    rows = list(csv.DictReader(next(root.rglob("metrics.csv")).open()))
    out: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if value not in ("", None):
                out.setdefault(key, []).append(float(value))
    return out


def fit_dti(tmp_path, steps_per_batch: int, model_cls=Classifier, callbacks=(), **trainer_args):
    voxel_table(tmp_path / "v.parquet")
    torch.manual_seed(0)
    dm = DTIDataModule(
        source="table",
        table_path=str(tmp_path / "v.parquet"),
        batch_size=32,
        split=[0.5, 0.25, 0.25],
        seed=1,
        steps_per_batch=steps_per_batch,
    )
    model = model_cls(
        MLP(5, [16, 16], 3, activation="sigmoid"),
        functools.partial(torch.optim.Adam, lr=1e-2),
        class_names=["a", "b", "c"],
        steps_per_batch=steps_per_batch,
        decision="tuned",
    )
    dm.setup("fit")
    model.set_data_spec(dm.data_spec())
    trainer = pl.Trainer(
        max_epochs=2,
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,  # every step logs its loss, gradient norms and saturation
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=[
            SaturationMonitor(),
            ModelCheckpoint(tmp_path / "ckpt", save_last=True),
            *callbacks,
        ],
        **trainer_args,
    )
    trainer.fit(model, datamodule=dm)
    return model, trainer, dm


class ReadsLoss(Classifier):
    """The mistake the sync count must catch: the loss read as a float inside the step."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.last_loss = float(loss)
        return loss


@pytest.mark.parametrize("steps_per_batch", [1, 4])
def test_a_logging_step_reads_nothing_to_the_host(tmp_path, steps_per_batch):
    with HostReads() as reads:
        _, trainer, _ = fit_dti(tmp_path, steps_per_batch)
    assert reads.in_steps == []
    values = logged(tmp_path / "csv")  # the deferred step scalars all arrived, one per step
    steps = trainer.global_step
    assert len(values["train/loss_step"]) == steps
    assert all(map(math.isfinite, values["train/loss_step"]))
    assert len(values["grad_norm/net.layers.0.weight"]) == steps
    # saturation: once per loader batch (its last micro-step's forward pass)
    assert len(values["saturation/layer1"]) == 2 * trainer.num_training_batches
    assert values["step"][: steps // 2] == sorted(values["step"][: steps // 2])


def test_the_sync_count_sees_a_float_read_in_the_step(tmp_path):
    with HostReads() as reads:
        fit_dti(tmp_path, 1, model_cls=ReadsLoss)
    assert reads.in_steps and all(
        r.startswith("__float__ in training_step") for r in reads.in_steps
    )


def assert_checkpoint_loads(model: Classifier, fresh: Classifier, path, spec, x) -> None:
    """The checkpoint of a mixed-precision run loads into a float32 model that predicts as the
    trained one does (float32 inference on both)."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    fresh.set_data_spec(spec)
    fresh.load_state_dict(state)
    assert all(v.dtype != torch.bfloat16 for v in state.values())
    model.eval(), fresh.eval()
    with torch.no_grad():
        want = model.predict_proba(x)
        got = fresh.predict_proba(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want)


class LogitsDtype(pl.Callback):
    """The dtype of the net's output in training steps (bf16/fp16 under autocast)."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.net.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        if module.training:
            self.dtypes.add(output.dtype)


def precision_args(precision: str) -> dict:
    """Trainer arguments of a precision on the CPU; 16-mixed as on a GPU: fp16 autocast and
    Lightning's gradient scaler (Trainer(precision="16-mixed") alone turns into bf16 on a CPU)."""
    if precision == "16-mixed":
        from pytorch_lightning.plugins.precision import MixedPrecision

        scaler = torch.amp.GradScaler("cpu")
        return {"plugins": [MixedPrecision("16-mixed", "cpu", scaler)]}
    return {"precision": precision}


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("steps_per_batch", [1, 4])
def test_dti_mlp_trains_in_mixed_precision_and_its_checkpoint_loads(
    tmp_path, precision, steps_per_batch
):
    want = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    seen = LogitsDtype()
    with HostReads() as reads:
        model, trainer, dm = fit_dti(
            tmp_path, steps_per_batch, callbacks=[seen], **precision_args(precision)
        )
    assert seen.dtypes == {want}  # the training forward passes ran under autocast
    assert reads.in_steps == []
    values = logged(tmp_path / "csv")
    assert len(values["train/loss_step"]) == trainer.global_step > 0
    assert all(map(math.isfinite, values["train/loss_step"] + values["val/loss"]))
    fresh = Classifier(
        MLP(5, [16, 16], 3, activation="sigmoid"), torch.optim.Adam, class_names=["a", "b", "c"]
    )
    x = dm.data["val"]["x"][:200]
    assert_checkpoint_loads(model, fresh, tmp_path / "ckpt" / "last.ckpt", dm.data_spec(), x)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_cnn_trains_in_mixed_precision_with_precise_batch_norm_and_its_checkpoint_loads(
    tmp_path, precision
):
    from mrinet.callbacks import PreciseBatchNorm

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 2
    x = torch.randn(48, 1, 32, 32, generator=gen) * (1 + y.float()).reshape(-1, 1, 1, 1)
    spec = DataSpec(classes=("reference", "accelerated"), input_shape=(1, 32, 32))
    net = functools.partial(ConvNet, channels=[4, 8], norm="batch")

    def classifier() -> ImageClassifier:
        return ImageClassifier(
            net, functools.partial(torch.optim.Adam, lr=1e-2), image_size=(32, 32), num_examples=4
        )

    torch.manual_seed(0)
    model = classifier()
    model.set_data_spec(spec)
    seen = LogitsDtype()
    trainer = pl.Trainer(
        max_epochs=2,
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=[
            PreciseBatchNorm(max_batches=2),
            ModelCheckpoint(tmp_path / "ckpt", save_last=True),
            seen,
        ],
        **precision_args(precision),
    )
    train = TensorBatches(x[:32], y[:32], batch_size=8, shuffle=True)
    val = TensorBatches(x[32:], y[32:], batch_size=8)
    with HostReads() as reads:
        trainer.fit(model, train, val)
    assert seen.dtypes == {torch.bfloat16 if precision == "bf16-mixed" else torch.float16}
    assert reads.in_steps == []
    values = logged(tmp_path / "csv")
    assert len(values["train/loss_step"]) == trainer.global_step == 8
    assert all(map(math.isfinite, values["train/loss_step"] + values["val/loss"]))
    assert_checkpoint_loads(model, classifier(), tmp_path / "ckpt" / "last.ckpt", spec, x[32:])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


def test_loaders_pin_only_for_a_cuda_trainer_and_groups_stay_put_on_the_cpu():
    from mrinet.data.contract import BatchGroup
    from mrinet.data.loading.batches import pin_for

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert not pin_for(trainer) and not pin_for(None)
    model = Classifier(MLP(5, [4], 3), torch.optim.Adam)
    group = BatchGroup([(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))] * 3)
    assert model.transfer_batch_to_device(group, torch.device("cpu"), 0) is group


@needs_cuda
def test_pinned_batches_reach_the_gpu_equal_to_unpinned_ones():
    from mrinet.data.contract import BatchGroup

    x, y = torch.randn(100, 5), torch.arange(100) % 3
    plain = list(TensorBatches(x, y, batch_size=16, shuffle=True, group=2))
    pinned = list(TensorBatches(x, y, batch_size=16, shuffle=True, group=2, pin_memory=True))
    assert all(t.is_pinned() for group in pinned for b in group for t in b)
    model = Classifier(MLP(5, [4], 3), torch.optim.Adam)
    cuda = torch.device("cuda", torch.cuda.current_device())
    for a, b in zip(plain, pinned):
        moved = model.transfer_batch_to_device(b, cuda, 0)
        assert isinstance(moved, BatchGroup)
        for (xa, ya), (xb, yb) in zip(a, moved):
            assert xb.device == cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())
