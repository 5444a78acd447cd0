"""PreciseBatchNorm: validation sees batch-norm statistics of the current weights."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mrinet.callbacks import PreciseBatchNorm


class TinyBN(pl.LightningModule):
    """conv -> BatchNorm -> pool -> linear; records the BN statistics validation runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen.append(self.bn.running_mean.clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _fit(callbacks, x, y, epochs=1):
    torch.manual_seed(0)
    model = TinyBN()
    train = DataLoader(TensorDataset(x, y), batch_size=8)
    val = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train, val)
    return model


def test_validation_uses_statistics_of_the_final_weights():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 8, 8, generator=gen) * 3 + 2
    y = torch.randint(0, 2, (32,), generator=gen)
    model = _fit([PreciseBatchNorm()], x, y)
    with torch.no_grad():  # oracle: the conv outputs of all training images, final weights
        expected = model.conv(x).mean((0, 2, 3))
    torch.testing.assert_close(model.seen[-1], expected, rtol=1e-5, atol=1e-5)
    assert model.bn.momentum == 0.1 and model.bn.training  # restored for training
    plain = _fit([], x, y)  # momentum averages over past weights: not those statistics
    assert not torch.allclose(plain.seen[-1], expected, atol=1e-3)


def test_max_batches_limits_the_pass_and_validates():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(32, 1, 8, 8, generator=gen)
    y = torch.randint(0, 2, (32,), generator=gen)
    model = _fit([PreciseBatchNorm(max_batches=1)], x, y)
    with torch.no_grad():
        expected = model.conv(x[:8]).mean((0, 2, 3))
    torch.testing.assert_close(model.seen[-1], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="max_batches"):
        PreciseBatchNorm(max_batches=0)
