"""Grouped optimizer steps: k steps per loader item, Lightning's per-batch cost paid once.

A small MLP's step is mostly Python: Lightning's loop costs ~0.4 ms per batch, as much as the
arithmetic (docs/benchmarks.md, training throughput). With `model.steps_per_batch=k` the loader
serves a `BatchGroup` of k batches per item and the module below runs one optimizer step per
batch: the same updates, in the same order, as k loader items.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from mrinet.callbacks.grad_norms import GradNormLogger
from mrinet.compat.lightning import step_without_hooks
from mrinet.data.contract import BatchGroup
from mrinet.models.step_scalars import StepScalars


class GroupedSteps:
    """Mixin for a LightningModule with manual optimisation, `_step` and
    `hparams.scheduler_monitor` (the Classifier): grouped steps and cheap step logging."""

    def log_step_metrics(self, metrics: dict[str, torch.Tensor | float]) -> None:
        """Log step scalars without a host sync: kept on the device (mrinet.models.step_scalars)
        and written straight to the loggers (rank 0) at the next validation or epoch end
        (Lightning's `self.log` machinery costs ~0.4 ms per call and step)."""
        if not self._trainer or self.trainer.sanity_checking or self.global_rank != 0:
            return
        if not hasattr(self, "_step_scalars"):
            self._step_scalars = StepScalars()
        self._step_scalars.add(self.global_step, metrics)

    def write_step_metrics(self) -> None:
        """Write the step scalars kept since the last call (validation start, epoch end)."""
        pending = getattr(self, "_step_scalars", None)
        if pending is not None and len(pending) and self._trainer:
            pending.write(self.loggers)

    def on_validation_start(self) -> None:
        self.write_step_metrics()

    def on_train_end(self) -> None:
        self.write_step_metrics()

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """A group of batches moves tensor by tensor (non_blocking: pinned batches overlap the
        copy with the step); on the CPU it stays as served. Lightning's generic walk over the
        group's nested tuples cost ~0.1 s per 1e6-row epoch of Python for nothing."""
        if not isinstance(batch, BatchGroup):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if all(t.device == device for b in batch for t in b if torch.is_tensor(t)):
            return batch
        return BatchGroup(
            tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in b)
            for b in batch
        )

    def _log_now(self, every: int | None = None) -> bool:
        """True on the steps Lightning writes step metrics (skip computing them otherwise)."""
        every = every or (self.trainer.log_every_n_steps if self._trainer else 1)
        return (self.global_step + 1) % max(every, 1) == 0

    def _grouped_steps(self, batches: list) -> torch.Tensor:
        """One optimizer step per batch of a loader group: the same updates, in the same order,
        as one loader batch each, with Lightning's per-batch cost paid once per group
        (docs/benchmarks.md: that cost, not arithmetic, limits a small MLP). Single process only."""
        optimizer = self.optimizers()
        fast = self._plain_steps_allowed()
        for xb, yb, *_ in batches:
            loss = self._step((xb, yb), "train")
            if fast and not self._grad_norms_now():
                # what manual_backward + optimizer.step do when no hook has work (checked by
                # _plain_steps_allowed): backward, step, and the loop's step count
                optimizer.optimizer.zero_grad()
                loss.backward()
                step_without_hooks(optimizer)
            else:
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()  # counts the step and runs on_before_optimizer_step (grad norms)
            if self._log_now():
                self.log_step_metrics({"train/loss_step": loss})
        return loss

    _STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

    def _grad_norms_now(self) -> bool:
        """Does a GradNormLogger log the coming optimizer step (it then takes the full path)?"""
        return any(
            c.due(self.trainer) for c in self.trainer.callbacks if isinstance(c, GradNormLogger)
        )

    def _plain_steps_allowed(self) -> bool:
        """May a grouped micro-step skip Lightning's backward/step wrappers (~1 ms per step)?

        Only where they would do nothing but call hooks that do nothing: one process, plain
        float precision (no gradient scaler), no callback that implements a per-step hook,
        and no override of the module's backward hooks (ours, the gradient norms, runs on
        its logging steps, which take the full path).
        """
        trainer = self.trainer
        if trainer.world_size > 1 or str(trainer.precision) not in ("32-true", "64-true"):
            return False
        if type(self).backward is not pl.LightningModule.backward:
            return False
        for hook in self._STEP_HOOKS:
            if getattr(type(self), hook) is not getattr(pl.LightningModule, hook):
                return False
        return not any(
            getattr(type(callback), hook) is not getattr(pl.Callback, hook)
            for callback in trainer.callbacks
            if not isinstance(callback, GradNormLogger)
            for hook in self._STEP_HOOKS
        )

    def on_train_epoch_end_schedulers(self) -> None:
        """With grouped steps (manual optimisation) Lightning does not step schedulers: do it."""
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get(self.hparams.scheduler_monitor)
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()
