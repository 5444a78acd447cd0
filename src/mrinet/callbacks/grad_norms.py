"""Per-parameter gradient norms in the logs, every n optimizer steps (Lightning's `grad_norm`)."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities import grad_norm


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
        norms = grad_norm(pl_module, norm_type=2, group_separator="/")
        values = {f"grad_norm/{k.split('/', 1)[1]}": v for k, v in norms.items() if "/" in k}
        if hasattr(pl_module, "log_step_metrics"):  # mrinet's Classifier: straight to the loggers
            pl_module.log_step_metrics(values)
        else:
            pl_module.log_dict(values, on_step=True, on_epoch=False)
