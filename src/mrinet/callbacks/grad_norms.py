"""Per-parameter gradient norms in the logs, every n optimizer steps, without a host sync."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class GradNormLogger(pl.Callback):
    """Log `grad_norm/<parameter>` (the 2-norm of each gradient) before the optimizer steps,
    every `every_n_steps` steps (default: the trainer's log_every_n_steps), counted from step 0.

    Runs inside the optimizer step, so autograd and hand-derived gradients (the backprop model)
    are logged alike. Grouped steps (model.steps_per_batch) ask `due` and take Lightning's
    full step path only on the steps it logs."""

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps

    def due(self, trainer: pl.Trainer) -> bool:
        """Does the coming optimizer step log gradient norms?"""
        every = self.every_n_steps or trainer.log_every_n_steps
        return bool(every) and trainer.global_step % every == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.due(trainer):
            return
        # tensors, read by the host only when written (Lightning's grad_norm builds its total
        # with torch.tensor(list of norms): a host sync per logged step)
        values = {
            f"grad_norm/{name}": torch.linalg.vector_norm(p.grad.detach(), 2)
            for name, p in pl_module.named_parameters()
            if p.grad is not None
        }
        if hasattr(pl_module, "log_step_metrics"):  # mrinet's Classifier: straight to the loggers
            pl_module.log_step_metrics(values)
        else:
            pl_module.log_dict(values, on_step=True, on_epoch=False)
