"""Classifier LightningModule: a plain net + a cost + an optimizer recipe + metrics and logging."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from mrinet.models.metrics import ConfusionCounts, batch_confusion, confusion_metrics

LOSSES = ("cross_entropy", "quadratic")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def quadratic_cost(
    logits: torch.Tensor,
    target: torch.Tensor,
    output_activation: str,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The lecture's C = 1/(2N) sum_x ||y_x - a_x||^2 with a = sigma(z^L) and one-hot y."""
    a = torch.sigmoid(logits) if output_activation == "sigmoid" else torch.softmax(logits, dim=1)
    y = F.one_hot(target, a.shape[1]).to(a.dtype)
    per_sample = 0.5 * (y - a).pow(2).sum(1)
    if weight is not None:
        per_sample = per_sample * weight[target]
    return per_sample.mean()


class Classifier(pl.LightningModule):
    """Trains any net that maps inputs to class logits (MLP on voxels, CNN on images).

    Inputs are standardised inside the model with the training split's statistics
    (`input_mean`, `input_std`, saved in the checkpoint), so a checkpoint predicts on raw data.
    Metrics come from one confusion matrix per stage, updated with a bincount each step and
    turned into accuracy, balanced accuracy and per-class F1 at epoch end (cheap, DDP-exact).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        loss: str = "cross_entropy",
        output_activation: str = "softmax",
        class_names: Sequence[str] | None = None,
        scheduler: Callable | None = None,
        scheduler_monitor: str = "val/loss",
        standardize_inputs: bool = True,
        grad_norm_every_n_steps: int | None = None,
        steps_per_batch: int = 1,
        figures_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if int(steps_per_batch) < 1:
            raise ValueError(f"model.steps_per_batch must be >= 1, got {steps_per_batch}")
        if int(figures_every_n_epochs) < 1:
            raise ValueError(
                f"model.figures_every_n_epochs must be >= 1, got {figures_every_n_epochs}"
            )
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r}: choose one of {LOSSES}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"model.output_activation={output_activation!r}: choose one of {OUTPUT_ACTIVATIONS}"
            )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_name, self.output_activation = loss, output_activation
        self.class_names = list(class_names) if class_names else None
        self.standardize_inputs = standardize_inputs
        self.grad_norm_every_n_steps = grad_norm_every_n_steps
        # validation figures (matplotlib, ~0.1-1 s each) every n epochs and at the last epoch
        self.figures_every_n_epochs = int(figures_every_n_epochs)
        # k > 1: each loader batch holds k optimizer batches (see `training_step`)
        self.steps_per_batch = int(steps_per_batch)
        self.micro_batch_size: int | None = None
        if self.steps_per_batch > 1:
            self.automatic_optimization = False
        self.register_buffer("input_mean", torch.zeros(0))
        self.register_buffer("input_std", torch.ones(0))
        self.register_buffer("class_weight", torch.zeros(0))
        self._confmats = nn.ModuleDict()  # one ConfusionCounts per stage, synced at epoch end
        self._counts: dict[str, torch.Tensor] = {}  # this process's counts of the running epoch
        self._loss_sums: dict[str, list[torch.Tensor]] = {}

    # ---- data-derived state (scaling, class weights), saved in the checkpoint -------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and datamodule is not None:
            if self.standardize_inputs and hasattr(datamodule, "input_scaling"):
                mean, std = datamodule.input_scaling
                self.input_mean, self.input_std = mean.to(self.device), std.to(self.device)
            weights = getattr(datamodule, "class_weights", None)
            if weights is not None:
                self.class_weight = weights.to(self.device)
        if self.class_names is None and datamodule is not None:
            self.class_names = list(getattr(datamodule, "classes", []))
        if stage == "fit" and self.steps_per_batch > 1:
            if self.trainer.world_size > 1:  # DDP needs one backward per forward of its wrapper
                self.steps_per_batch, self.automatic_optimization = 1, True
            elif getattr(datamodule, "batch_size", None) is None:
                raise ValueError("model.steps_per_batch > 1 needs a DataModule with a batch_size")
            else:
                self.micro_batch_size = int(datamodule.batch_size)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # buffers whose size comes from the data: take the checkpoint's size
        for name in ("input_mean", "input_std", "class_weight"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- forward and cost ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> class logits (standardised with the training statistics first)."""
        if self.input_mean.numel():
            x = (x - self.input_mean) / self.input_std
        return self.net(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities as the cost defines them (softmax, or sigmoid outputs renormalised)."""
        logits = self(x)
        if self.loss_name == "quadratic" and self.output_activation == "sigmoid":
            a = torch.sigmoid(logits)
            return a / a.sum(1, keepdim=True).clamp(min=1e-12)
        return torch.softmax(logits, dim=1)

    def cost(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self.class_weight if self.class_weight.numel() else None
        if self.loss_name == "quadratic":
            return quadratic_cost(logits, target, self.output_activation, weight)
        return F.cross_entropy(logits, target, weight=weight)

    # ---- steps -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else self._num_outputs()

    def _confmat(self, stage: str) -> ConfusionCounts:
        key = f"confmat_{stage}"  # ModuleDict keys must not shadow Module attributes ("train")
        if key not in self._confmats:
            self._confmats[key] = ConfusionCounts(self.num_classes).to(self.device)
        return self._confmats[key]

    def _num_outputs(self) -> int:
        last = [m for m in self.net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        return last.out_features if isinstance(last, nn.Linear) else last.out_channels

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = self.cost(logits, y)
        counts = batch_confusion(logits.detach().argmax(1), y, logits.shape[1])
        self._counts[stage] = counts if stage not in self._counts else self._counts[stage] + counts
        # epoch loss = the cost over the whole epoch, whatever the batching: weight each batch
        # by what its cost divides by (sum of class weights for weighted cross-entropy, else N)
        norm = self._cost_normalizer(y, counts)
        sums = self._loss_sums.setdefault(stage, [torch.zeros((), device=loss.device), 0.0])
        sums[0] = sums[0] + loss.detach() * norm
        sums[1] = sums[1] + norm
        return loss

    def _cost_normalizer(self, y: torch.Tensor, counts: torch.Tensor):
        """What the batch's cost divides by: the sum of the targets' class weights (weighted
        cross-entropy; from the batch's (C, C) confusion counts: (C,) work, not (N,)) or N."""
        if self.loss_name == "cross_entropy" and self.class_weight.numel():
            return (self.class_weight * counts.sum(1)).sum()
        return float(len(y))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self.steps_per_batch > 1:
            return self._grouped_steps(batch)
        loss = self._step(batch, "train")
        if self._log_now():
            self.log_step_metrics({"train/loss_step": loss})
        return loss

    def _grouped_steps(self, batch) -> torch.Tensor:
        """k optimizer steps on consecutive slices of one loader batch: the same updates, in the
        same order, as k loader batches, with Lightning's per-batch cost paid once (RESEARCH.md:
        that cost, not arithmetic, limits a small MLP). Single process only."""
        optimizer = self.optimizers()
        fast = self._plain_steps_allowed()
        x, y = batch[0], batch[1]
        for xb, yb in zip(x.split(self.micro_batch_size), y.split(self.micro_batch_size)):
            loss = self._step((xb, yb), "train")
            if fast and not self._grad_norms_now():
                # what manual_backward + optimizer.step do when no hook has work (checked by
                # _plain_steps_allowed): backward, step, and the loop's step count
                optimizer.optimizer.zero_grad()
                loss.backward()
                optimizer._on_before_step()
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()  # counts the step and runs on_before_optimizer_step (grad norms)
            if self._log_now():
                self.log_step_metrics({"train/loss_step": loss})
        return loss

    _STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

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
        for hook in ("on_before_backward", "on_after_backward"):  # ours: only the optimizer hook
            if getattr(type(self), hook) is not getattr(pl.LightningModule, hook):
                return False
        return not any(
            getattr(type(callback), hook) is not getattr(pl.Callback, hook)
            for callback in trainer.callbacks
            for hook in self._STEP_HOOKS
        )

    def _grad_norms_now(self) -> bool:
        """True before the optimizer steps on which on_before_optimizer_step logs grad norms."""
        every = self.grad_norm_every_n_steps or (
            self.trainer.log_every_n_steps if self._trainer else 0
        )
        return bool(every) and self.global_step % every == 0

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

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def log_step_metrics(self, metrics: dict[str, torch.Tensor | float]) -> None:
        """Write step scalars straight to the loggers (rank 0): Lightning's `self.log` machinery
        costs ~0.4 ms per call and step, a noticeable share of a small MLP's step."""
        if not self._trainer or self.trainer.sanity_checking or self.global_rank != 0:
            return
        values = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in metrics.items()}
        for logger in self.loggers:
            logger.log_metrics(values, step=self.global_step)

    def _log_now(self, every: int | None = None) -> bool:
        """True on the steps Lightning writes step metrics (skip computing them otherwise)."""
        every = every or (self.trainer.log_every_n_steps if self._trainer else 1)
        return (self.global_step + 1) % max(every, 1) == 0

    # ---- epoch ends: metrics, figures ------------------------------------------------------
    def _epoch_end(self, stage: str) -> None:
        counts = self._counts.pop(stage, None)
        if counts is None:
            return
        metric = self._confmat(stage)
        metric.update(counts)
        confmat = metric.compute()  # summed over ranks under DDP
        metric.reset()
        total, count = self._loss_sums.pop(stage, (torch.zeros(()), 0.0))
        count_t = torch.as_tensor(count, dtype=torch.float32, device=self.device)
        total = total.to(self.device)
        if self.trainer.world_size > 1:
            total, count_t = self.all_gather(total).sum(), self.all_gather(count_t).sum()
        names = self.class_names or [str(i) for i in range(confmat.shape[0])]
        metrics = {f"{stage}/{k}": v for k, v in confusion_metrics(confmat, names).items()}
        metrics[f"{stage}/loss"] = total / count_t.clamp(min=1)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, sync_dist=False)
        if stage != "train" and self._figures_now(stage):
            self._log_confusion_figure(confmat, names, stage)

    def _figures_now(self, stage: str) -> bool:
        """Draw this epoch's figures? Test: always; validation: epochs 0, n, 2n, ... and the
        last of max_epochs (scalars are logged every epoch regardless)."""
        if stage != "val" or not self._trainer:
            return True
        epoch, last = self.current_epoch, self.trainer.max_epochs
        return epoch % self.figures_every_n_epochs == 0 or (last is not None and epoch == last - 1)

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")
        if self.steps_per_batch > 1:
            self.on_train_epoch_end_schedulers()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def tensorboard(self):
        """The run's TensorBoard SummaryWriter, or None when no TensorBoard logger is attached."""
        from pytorch_lightning.loggers import TensorBoardLogger

        if not self._trainer or self.trainer.sanity_checking:
            return None
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger) and self.global_rank == 0:
                return logger.experiment
        return None

    def _log_confusion_figure(self, confmat: torch.Tensor, names: list[str], stage: str) -> None:
        writer = self.tensorboard()
        if writer is None:
            return
        from mrinet.models.figures import confusion_matrix_figure

        title = f"{stage} confusion matrix (epoch {self.current_epoch})"
        fig = confusion_matrix_figure(confmat.cpu().numpy(), names, title)
        writer.add_figure(
            f"{stage}/confusion_matrix", fig, global_step=self.global_step, close=True
        )

    # ---- gradient norms per layer ----------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        if not self._grad_norms_now():
            return
        norms = {
            f"grad_norm/{name}": p.grad.detach().norm()
            for name, p in self.named_parameters()
            if p.grad is not None
        }
        self.log_step_metrics(norms)

    # ---- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams.scheduler_monitor,
                "interval": "epoch",
            },
        }
