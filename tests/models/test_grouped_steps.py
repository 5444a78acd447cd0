"""model.steps_per_batch=k: k optimizer steps per loader batch give the plain run's updates."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch

from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.models.classifier import Classifier
from mrinet.nets.mlp import MLP


def voxel_table(path, n: int = 3000) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    means = np.array(
        [[900, 0.2, 1.0, 1.3, 0.9], [1000, 0.7, 0.4, 0.7, 0.2], [870, 0.4, 0.6, 0.8, 0.5]]
    )
    x = means[y] * (1 + 0.1 * rng.normal(size=(n, 5)))
    frame = pd.DataFrame(x, columns=["T1w", "FA", "MD", "AD", "RD"]).assign(label=y + 1)
    frame["subject"] = [f"s{i % 6}" for i in range(n)]
    frame.to_csv(path, index=False)


def train(path, steps_per_batch: int, scheduler=None, callbacks=()):
    torch.manual_seed(0)
    dm = DTIDataModule(
        source="table",
        table_path=str(path),
        batch_size=64,
        split=[0.5, 0.25, 0.25],
        seed=1,
        class_weights=True,
        steps_per_batch=steps_per_batch,
    )
    model = Classifier(
        MLP(5, [16, 16], 3),
        functools.partial(torch.optim.Adam, lr=1e-2),
        class_names=["a", "b", "c"],
        steps_per_batch=steps_per_batch,
        scheduler=scheduler,
    )
    dm.setup("fit")
    model.set_data_spec(dm.data_spec())
    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=list(callbacks),
    )
    trainer.fit(model, datamodule=dm)
    return model, trainer


@pytest.mark.parametrize("k", [3, 8])
def test_grouped_steps_give_the_same_weights_steps_and_metrics(tmp_path, k):
    voxel_table(tmp_path / "v.csv")
    plain, plain_trainer = train(tmp_path / "v.csv", 1)
    grouped, grouped_trainer = train(tmp_path / "v.csv", k)
    assert grouped_trainer.global_step == plain_trainer.global_step  # every optimizer step counted
    for (name, a), b in zip(plain.state_dict().items(), grouped.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for key in ("train/loss", "val/bal_acc", "val/loss"):
        assert float(plain_trainer.callback_metrics[key]) == pytest.approx(
            float(grouped_trainer.callback_metrics[key]), rel=1e-5
        )


def test_grouped_steps_still_step_the_learning_rate_scheduler(tmp_path):
    voxel_table(tmp_path / "v.csv")
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    plain, _ = train(tmp_path / "v.csv", 1, step_lr)
    grouped, _ = train(tmp_path / "v.csv", 4, step_lr)
    lr = [m.trainer.optimizers[0].param_groups[0]["lr"] for m in (plain, grouped)]
    assert lr[0] == lr[1] == pytest.approx(1e-2 * 0.5**3)


class StepHookCounter(pl.Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls += 1


def test_plain_micro_steps_only_where_no_per_step_hook_has_work(tmp_path):
    """Micro-steps skip Lightning's backward/step wrappers unless a callback implements a
    per-step hook: then every optimizer step goes through them (and the hook runs each time)."""
    voxel_table(tmp_path / "v.csv")
    plain, plain_trainer = train(tmp_path / "v.csv", 1)
    fast, fast_trainer = train(tmp_path / "v.csv", 4)
    assert fast._plain_steps_allowed()
    counter = StepHookCounter()
    hooked, hooked_trainer = train(tmp_path / "v.csv", 4, callbacks=[counter])
    assert not hooked._plain_steps_allowed()
    assert counter.calls == hooked_trainer.global_step == plain_trainer.global_step
    assert fast_trainer.global_step == plain_trainer.global_step
    for a, b, c in zip(
        plain.state_dict().values(), fast.state_dict().values(), hooked.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6)


def test_saturation_is_logged_with_grouped_steps(tmp_path):
    """With k = 8 steps per batch, batches start at steps 0, 8, 16, ...: a logging step
    (step + 1) % 50 == 0 never starts a batch, but one falls inside one, and is measured."""
    from pytorch_lightning.loggers import CSVLogger

    from mrinet.callbacks.saturation import SaturationMonitor

    voxel_table(tmp_path / "v.csv")
    torch.manual_seed(0)
    dm = DTIDataModule(
        source="table",
        table_path=str(tmp_path / "v.csv"),
        batch_size=64,
        split=[0.5, 0.25, 0.25],
        seed=1,
        steps_per_batch=8,
    )
    model = Classifier(
        MLP(5, [16, 16], 3, activation="sigmoid"),
        functools.partial(torch.optim.Adam, lr=1e-2),
        class_names=["a", "b", "c"],
        steps_per_batch=8,
    )
    dm.setup("fit")
    model.set_data_spec(dm.data_spec())
    trainer = pl.Trainer(
        max_epochs=4,
        logger=CSVLogger(tmp_path, name="csv"),
        log_every_n_steps=50,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=[SaturationMonitor()],
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step >= 50
    text = next((tmp_path / "csv").rglob("metrics.csv")).read_text()
    assert "saturation/layer1" in text.splitlines()[0]
