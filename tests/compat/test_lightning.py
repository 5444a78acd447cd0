"""Each private Lightning API in mrinet.compat.lightning, against the installed Lightning.

One test per function: when a Lightning release renames or changes one of them, the test of
that function fails here (before any training run does). Real Trainers, tiny fits on CPU.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import ClusterEnvironment, LightningEnvironment
from torch.utils.data import DataLoader, TensorDataset

from mrinet.compat import lightning as compat


class Tiny(pl.LightningModule):
    """A linear model on 8 random points; counts its validation steps."""

    def __init__(self, manual: bool = False):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.automatic_optimization = not manual
        self.val_steps = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        if self.automatic_optimization:
            return loss
        optimizer = self.optimizers()
        optimizer.optimizer.zero_grad()
        loss.backward()
        compat.step_without_hooks(optimizer)
        return None

    def validation_step(self, batch, batch_idx):
        self.val_steps += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 2, generator=g), torch.randn(8, 1, generator=g))
    return DataLoader(data, batch_size=4)


def _fit(tmp_path, callback=None, model=None, **trainer_args) -> tuple[pl.Trainer, Tiny]:
    args = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
        **trainer_args,
    }
    trainer = pl.Trainer(callbacks=[callback] if callback else [], **args)
    model = model or Tiny()
    trainer.fit(model, _loader(), _loader())
    return trainer, model


class Probe(pl.Callback):
    """Calls `fn(trainer)` at each hook named in `hooks` and keeps the results."""

    def __init__(self, fn, hook: str = "on_train_batch_end"):
        self.seen: list = []
        setattr(self, hook, lambda trainer, *args: self.seen.append(fn(trainer)))


def test_cluster_environment_is_the_one_lightning_chose():
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    env = compat.cluster_environment(trainer)
    assert isinstance(env, ClusterEnvironment) and isinstance(env, LightningEnvironment)
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert compat.cluster_environment(ddp) is ddp.strategy.cluster_environment


def test_train_loaders_are_the_fit_loaders(tmp_path):
    loader_types = Probe(lambda t: [type(dl) for dl in compat.train_loaders(t)])
    _fit(tmp_path, loader_types)
    assert loader_types.seen == [[DataLoader], [DataLoader]]
    assert compat.train_loaders(pl.Trainer(logger=False)) is None  # before any fit


def test_is_stateful_follows_the_state_dict_protocol():
    class Resumable:
        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    assert compat.is_stateful(Resumable())
    assert not compat.is_stateful(object())


def test_next_hpc_checkpoint_path_counts_up_from_the_newest(tmp_path):
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False)
    assert compat.next_hpc_checkpoint_path(trainer) == str(tmp_path / "hpc_ckpt_1.ckpt")
    (tmp_path / "hpc_ckpt_3.ckpt").write_bytes(b"")
    assert compat.next_hpc_checkpoint_path(trainer) == str(tmp_path / "hpc_ckpt_4.ckpt")


@pytest.mark.parametrize(
    ("trainer_args", "expected"),
    [
        ({"max_epochs": 2, "check_val_every_n_epoch": 2}, [False, True]),
        ({"max_epochs": 1, "limit_val_batches": 0}, [False]),
        ({"max_epochs": 1}, [True]),
    ],
)
def test_validates_this_epoch_follows_the_trainer_settings(tmp_path, trainer_args, expected):
    probe = Probe(compat.validates_this_epoch, "on_train_epoch_end")
    _fit(tmp_path, probe, **trainer_args)
    assert probe.seen == expected


def test_rerun_validation_runs_the_epochs_validation_again_and_training_goes_on(tmp_path):
    class Rerun(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                compat.rerun_validation(trainer)
                assert trainer.training

    trainer, model = _fit(tmp_path, Rerun(), max_epochs=2)
    assert model.val_steps == 2 * 2 + 2  # two epochs of 2 batches, epoch 0's again
    assert trainer.current_epoch == 2 and trainer.global_step == 4


def test_step_without_hooks_steps_and_counts_like_optimizer_step(tmp_path):
    plain = Tiny(manual=True)
    reference = Tiny(manual=True)
    reference.load_state_dict(plain.state_dict())
    trainer, model = _fit(tmp_path, model=plain, limit_val_batches=0)
    assert trainer.global_step == 2  # the loop counted both steps
    # the same two SGD steps by hand
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for x, y in _loader():
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(reference.layer(x), y).backward()
        optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b)


def test_spawns_script_copies_only_for_ddp_started_by_lightning():
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert compat.spawns_script_copies(ddp.strategy)
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    assert not compat.spawns_script_copies(single.strategy)
    spawn = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    assert not compat.spawns_script_copies(spawn.strategy)
