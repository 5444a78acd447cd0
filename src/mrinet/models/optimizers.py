"""The optimizer recipe a model config names, in Lightning's `configure_optimizers` form."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def optimizers(
    params: Iterable[torch.nn.Parameter],
    optimizer_factory: Callable,
    scheduler_factory: Callable | None,
    monitor: str | None,
):
    """The optimizer, with its epoch-wise scheduler (monitoring `monitor`) when one is set."""
    optimizer = optimizer_factory(params=params)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer=optimizer)
    schedule = {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
    return {"optimizer": optimizer, "lr_scheduler": schedule}
