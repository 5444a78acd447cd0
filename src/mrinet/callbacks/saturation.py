"""Saturated hidden units per layer while training: the lecture's "what sets the speed of learning"."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info

from mrinet.nets.backprop import HIDDEN_ACTIVATIONS, saturated_share


class SaturationMonitor(pl.Callback):
    """Log `saturation/layer{l}`: the fraction of hidden units with sigma'(z^l) < threshold.

    Reads z^l from the training forward pass itself (forward hooks on the MLP's per-layer
    `norms`, which are Identity without batch norm), so it costs no extra forward pass, leaves
    batch-norm statistics alone, and works with autograd and hand-derived backprop alike.
    Logged every `every_n_steps` steps (default: the trainer's log_every_n_steps). Nets without
    `activation_name` and `norms` (CNNs) or with another activation are skipped with one line.
    For tanh and relu the criterion is `mrinet.nets.backprop.saturated_share`'s (a tensor: the
    value reaches the host with the model's other step scalars, no sync in the step).
    """

    def __init__(self, every_n_steps: int | None = None, threshold: float = 0.01) -> None:
        self.every_n_steps, self.threshold = every_n_steps, float(threshold)
        self._handles: list = []
        self._z: dict[int, object] = {}
        self._armed = False
        self._activation = ""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = getattr(pl_module, "net", None)
        activation = getattr(net, "activation_name", None)
        if activation not in HIDDEN_ACTIVATIONS or not hasattr(net, "norms"):
            rank_zero_info(f"SaturationMonitor: no saturation logging for {type(net).__name__}")
            return
        self._activation = activation
        for index, module in enumerate(net.norms, start=1):
            self._handles.append(module.register_forward_hook(self._keeper(index)))

    def _keeper(self, index: int):
        def keep(module, inputs, output) -> None:
            if self._armed and module.training:
                self._z[index] = output.detach()

        return keep

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        every = max(int(self.every_n_steps or trainer.log_every_n_steps or 1), 1)
        # Lightning writes step metrics when (step + 1) % log_every_n_steps == 0: measure then.
        # A batch of grouped steps (model.steps_per_batch = k) covers optimizer steps
        # [g, g + k): measure if one of them is a logging step (the last micro-batch's z is kept)
        steps = 1 if pl_module.automatic_optimization else _steps_per_batch(pl_module)
        first = trainer.global_step
        self._armed = bool(self._handles) and any(
            (step + 1) % every == 0 for step in range(first, first + steps)
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._z:
            fractions = {
                f"saturation/layer{index}": saturated_share(z, self._activation, self.threshold)
                for index, z in sorted(self._z.items())
            }
            if hasattr(pl_module, "log_step_metrics"):
                pl_module.log_step_metrics(fractions)
            else:
                pl_module.log_dict(fractions, on_step=True, on_epoch=False)
        self._z.clear()
        self._armed = False

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _steps_per_batch(pl_module: pl.LightningModule) -> int:
    """Optimizer steps one training batch makes (mrinet's grouped steps; else 1)."""
    return max(int(getattr(pl_module, "steps_per_batch", 1) or 1), 1)
