"""Classifier LightningModule: a plain net + a cost + an optimizer recipe + metrics and logging."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from mrinet.data.spec import BatchGroup, DataSpec
from mrinet.errors import ConfigError, check_choice
from mrinet.models.decision import tune_offsets, weighting_offsets
from mrinet.models.grouped_steps import GroupedSteps
from mrinet.models.metrics import ConfusionCounts, batch_confusion, confusion_metrics
from mrinet.models.net_builder import build_net, check_logits, check_signature, net_target

# cross_entropy_dice: cross-entropy + (1 - soft Dice averaged over the classes), the usual cost of
# segmentation nets (nnU-Net): the small structures weigh as much as the large one
LOSSES = ("cross_entropy", "quadratic", "cross_entropy_dice")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")
# which class a sample gets from its logits (mrinet.models.decision; docs/tissue_maps.md):
# argmax | logit_adjusted (undo the class weights' bias: + log priors) | tuned (then per-class
# offsets tuned on each validation epoch for macro Dice, kept with the checkpoint)
DECISIONS = ("argmax", "logit_adjusted", "tuned")


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


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(C,) values shaped to broadcast over dim 1 of `like` ((N, C) or (B, C, X, Y, Z))."""
    return values.reshape(1, -1, *([1] * (like.ndim - 2))) if like.ndim > 2 else values


def labelled_voxels(logits: torch.Tensor, target: torch.Tensor):
    """Dense logits (B, C, X, Y, Z) and targets (B, X, Y, Z) (-1: no class) -> the labelled
    voxels' logits (N, C) and classes (N,), so costs and metrics are the voxel classifier's."""
    keep = target >= 0
    return logits.movedim(1, -1)[keep], target[keep]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of 2 sum(p y) / (sum p + sum y) with p = softmax(logits) (N, C) and
    one-hot targets (N,): the batch's Dice made differentiable (Milletari et al. 2016, V-Net);
    eps keeps a class absent from the batch at loss 0 when predicted absent."""
    p = torch.softmax(logits, dim=1)
    y = F.one_hot(target, p.shape[1]).to(p.dtype)
    overlap = (p * y).sum(0)
    dice = (2 * overlap + eps) / (p.sum(0) + y.sum(0) + eps)
    return 1 - dice.mean()


class Classifier(GroupedSteps, pl.LightningModule):
    """Trains any net that maps inputs to class logits (MLP on voxels, CNN on images).

    What the model needs from its data arrives as one `DataSpec` (`set_data_spec`, called by
    the entry point after `datamodule.setup`; stored in the checkpoint): class names, and the
    training split's input statistics and class weights as buffers, so inputs are standardised
    inside the model and a checkpoint predicts on raw data. `net` is a module, or a factory
    (a net config with `_partial_: true`) that `set_data_spec` calls with the data's input
    width and class count (mrinet.models.net_builder), so a net config names only its own
    arguments.
    Metrics come from one confusion matrix per stage, updated with a bincount each step and
    turned into accuracy, balanced accuracy and per-class Dice/F1 at epoch end (cheap, DDP-exact).
    The predicted class is argmax(logits + logit_offset) (`decision`): with `tuned`, the offsets
    that maximise validation macro Dice are re-fitted at each validation epoch from that epoch's
    logits and saved with the checkpoint, so test, eval, predict and the tissue maps use them.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., nn.Module],
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
        decision: str = "argmax",
    ) -> None:
        super().__init__()
        for key, value in (
            ("model.steps_per_batch", steps_per_batch),
            ("model.figures_every_n_epochs", figures_every_n_epochs),
        ):
            if int(value) < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}", key, f"e.g. {key}=1")
        check_choice(loss, LOSSES, "model.loss")
        check_choice(output_activation, OUTPUT_ACTIVATIONS, "model.output_activation")
        check_choice(decision, DECISIONS, "model.decision")
        self.decision = decision
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        # a factory is built by set_data_spec, sized by the data (net_sizes: what it filled in)
        built = isinstance(net, nn.Module)
        self.net_factory = None if built else net
        self.net: nn.Module | None = net if built else None
        self.net_sizes: dict = {}
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.loss_name, self.output_activation = loss, output_activation
        self.class_names = list(class_names) if class_names else None
        self.standardize_inputs = standardize_inputs
        self.grad_norm_every_n_steps = grad_norm_every_n_steps
        # validation figures (matplotlib, ~0.1-1 s each) every n epochs and at the last epoch
        self.figures_every_n_epochs = int(figures_every_n_epochs)
        # k > 1: each loader item is a list of k batches, one optimizer step each (`training_step`)
        self.steps_per_batch = int(steps_per_batch)
        self.data_spec: DataSpec | None = None
        if self.steps_per_batch > 1:
            self.automatic_optimization = False
        self.register_buffer("input_mean", torch.zeros(0))
        self.register_buffer("input_std", torch.ones(0))
        self.register_buffer("class_weight", torch.zeros(0))
        self.register_buffer("logit_offset", torch.zeros(0))  # (C,) added before the argmax
        self._val_logits: list[tuple[torch.Tensor, torch.Tensor]] = []  # for decision=tuned
        self._confmats = nn.ModuleDict()  # one ConfusionCounts per stage, synced at epoch end
        self._counts: dict[str, torch.Tensor] = {}  # this process's counts of the running epoch
        self._loss_sums: dict[str, list[torch.Tensor]] = {}
        if built:
            self.check_net()
        else:
            check_signature(net)  # before the data is read: sizes by name, or a clear error

    def check_net(self) -> None:
        """Refuse a net this model cannot train, once it is built (subclasses add checks)."""

    # ---- data-derived state (the DataSpec), saved in the checkpoint ------------------------
    def set_data_spec(self, spec: DataSpec) -> None:
        """Take what the model needs from its data: class names, input scaling, class weights."""
        if not isinstance(spec, DataSpec):
            raise TypeError(f"set_data_spec takes a mrinet.data.spec.DataSpec, got {type(spec)}")
        if self.class_names and len(self.class_names) != spec.num_classes:
            raise ConfigError(
                f"model.class_names {self.class_names} do not match the data's "
                f"{spec.num_classes} classes {list(spec.classes)}",
                "model.class_names",
                "drop model.class_names (the data's class names are used) or give one per class",
            )
        if self.net is None:  # the first layer and the output layer come from the data
            self.net, self.net_sizes = build_net(self.net_factory, spec)
            self.check_net()
        outputs = self._num_outputs()
        if outputs is not None and outputs != spec.num_classes:
            raise ConfigError(
                f"the net has {outputs} outputs but the data has {spec.num_classes} classes "
                f"{list(spec.classes)}",
                "model.net",
                "set the net's output size to the number of data.classes",
            )
        self.data_spec = spec
        self.class_names = self.class_names or list(spec.classes)
        mean, std = spec.tensor("input_mean"), spec.tensor("input_std")
        if self.standardize_inputs and mean is not None:
            self.input_mean, self.input_std = mean.to(self.device), std.to(self.device)
        else:
            self.input_mean, self.input_std = torch.zeros(0), torch.ones(0)
        weights = spec.tensor("class_weights")
        self.class_weight = torch.zeros(0) if weights is None else weights.to(self.device)
        if self.logit_offset.numel() != spec.num_classes:  # a loaded checkpoint keeps its own
            self.logit_offset = self.start_offsets().to(self.device)

    def start_offsets(self) -> torch.Tensor:
        """Offsets before any tuning: undo the class weighting unless decision=argmax."""
        n = self.num_classes
        if self.decision == "argmax" or not self.class_weight.numel():
            return torch.zeros(n)
        return weighting_offsets(self.class_weight.cpu())

    def setup(self, stage: str) -> None:
        if self.data_spec is None:
            raise ConfigError(
                f"{type(self).__name__} has no DataSpec for stage {stage!r}",
                "model",
                "call model.set_data_spec(datamodule.data_spec()) after datamodule.setup() "
                "(mrinet.train does), or build the model from a checkpoint (run.checkpoints.build_model)",
            )
        if stage == "fit" and self.steps_per_batch > 1 and self.trainer.world_size > 1:
            # DDP needs one backward per forward of its wrapper (the loader then serves single
            # batches too: DTIDataModule groups only in a single process)
            self.steps_per_batch, self.automatic_optimization = 1, True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.data_spec is not None:
            checkpoint["data_spec"] = self.data_spec.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "data_spec" in checkpoint:
            self.data_spec = DataSpec.from_dict(checkpoint["data_spec"])
            self.class_names = self.class_names or list(self.data_spec.classes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # buffers whose size comes from the data: take the checkpoint's size
        # checkpoints from before the decision rule: no offsets, i.e. plain argmax
        state_dict.setdefault(prefix + "logit_offset", torch.zeros(0))
        for name in ("input_mean", "input_std", "class_weight", "logit_offset"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- forward and cost ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> class logits (standardised with the training statistics first).

        Rows (N, F) -> (N, C), or volumes (B, F, X, Y, Z) -> (B, C, X, Y, Z) for a segmentation
        net: the statistics are per feature, i.e. per channel of a volume."""
        if self.input_mean.numel():
            x = (x - _per_channel(self.input_mean, x)) / _per_channel(self.input_std, x)
        return self.net(x)

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) or (B, C, ...) -> predicted class (N,) or (B, ...): argmax after the
        decision rule's offsets."""
        if self.logit_offset.numel():
            logits = logits + _per_channel(self.logit_offset, logits)
        return logits.argmax(1)

    def predict_classes(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> predicted class indices (N,) by the model's decision rule."""
        return self.decide(self(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities as the cost defines them (softmax, or sigmoid outputs renormalised),
        reweighted by exp(logit_offset): their argmax is `predict_classes`."""
        return self.probabilities(self(x))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> `predict_proba`'s probabilities (shared with mrinet.export's graph)."""
        if self.loss_name == "quadratic" and self.output_activation == "sigmoid":
            a = torch.sigmoid(logits)
        else:
            a = torch.softmax(logits, dim=1)
        if self.logit_offset.numel():
            a = a * _per_channel(torch.exp(self.logit_offset - self.logit_offset.max()), a)
        return a / a.sum(1, keepdim=True).clamp(min=1e-12)

    def cost(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self.class_weight if self.class_weight.numel() else None
        if self.loss_name == "quadratic":
            return quadratic_cost(logits, target, self.output_activation, weight)
        loss = F.cross_entropy(logits, target, weight=weight)
        if self.loss_name == "cross_entropy_dice":
            loss = loss + soft_dice_loss(logits, target)
        return loss

    # ---- steps -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else self._num_outputs()

    def _confmat(self, stage: str) -> ConfusionCounts:
        key = f"confmat_{stage}"  # ModuleDict keys must not shadow Module attributes ("train")
        if key not in self._confmats:
            self._confmats[key] = ConfusionCounts(self.num_classes).to(self.device)
        return self._confmats[key]

    def _num_outputs(self) -> int | None:
        if self.net is None:  # not built yet: set_data_spec builds it
            return None
        layers = [m for m in self.net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d))]
        if not layers:
            return None
        last = layers[-1]
        return last.out_features if isinstance(last, nn.Linear) else last.out_channels

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        if self.class_names and (logits.ndim < 2 or logits.shape[1] != len(self.class_names)):
            check_logits(logits, len(self.class_names), net_target(type(self.net)))
        dense = None
        if logits.ndim > 2:  # a segmentation net: its labelled voxels are the samples
            dense, (logits, y) = logits, labelled_voxels(logits, y)
        # nothing labelled (a DDP rank's filler volume): no cost, zero counts, but the rank
        # still takes part in the epoch-end syncs
        loss = self.cost(logits, y) if len(y) or dense is None else dense.sum() * 0.0
        if stage == "val" and self.decision == "tuned":
            self._val_logits.append((logits.detach(), y))
        counts = batch_confusion(self.decide(logits.detach()), y, logits.shape[1])
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
        grouped = isinstance(batch, BatchGroup)  # TensorBatches(group=k) serves k batches
        if self.steps_per_batch > 1:
            return self._grouped_steps(batch if grouped else [batch])
        if grouped:
            raise ConfigError(
                f"the loader serves groups of {len(batch)} batches but model.steps_per_batch=1",
                "data.steps_per_batch",
                "leave data.steps_per_batch to follow model.steps_per_batch (the default)",
            )
        loss = self._step(batch, "train")
        if self._log_now():
            self.log_step_metrics({"train/loss_step": loss})
        return loss

    def _grad_norms_now(self) -> bool:
        """True before the optimizer steps on which on_before_optimizer_step logs grad norms."""
        every = self.grad_norm_every_n_steps or (
            self.trainer.log_every_n_steps if self._trainer else 0
        )
        return bool(every) and self.global_step % every == 0

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
    def _tune_offsets(self) -> torch.Tensor | None:
        """decision=tuned: fit the offsets to this validation epoch's logits (rank 0's under
        DDP, broadcast to all ranks) and return this rank's confusion counts under them."""
        stored, self._val_logits = self._val_logits, []
        if not stored:
            return None
        logits = torch.cat([s[0] for s in stored])
        target = torch.cat([s[1] for s in stored])
        if len(target):
            offsets = tune_offsets(logits, target, start=self.start_offsets())
        else:  # this rank saw no labelled voxel: rank 0's offsets arrive by broadcast
            offsets = self.logit_offset.detach().clone()
        if self._trainer is not None and self.trainer.world_size > 1:
            offsets = self.trainer.strategy.broadcast(offsets, src=0)
        self.logit_offset = offsets.to(self.device)
        return batch_confusion(self.decide(logits), target, logits.shape[1])

    def _epoch_end(self, stage: str) -> None:
        counts = self._counts.pop(stage, None)
        if stage == "val" and self.decision == "tuned" and not self.trainer.sanity_checking:
            tuned = self._tune_offsets()
            counts = tuned if tuned is not None else counts
        self._val_logits = []
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
        """The run's figure writer (TensorBoard's add_figure/add_scalar/add_text, to TensorBoard
        and MLflow: mrinet.models.run_writer.RunWriter), or None without such a logger or off rank 0."""
        from mrinet.models.run_writer import run_writer

        if not self._trainer or self.trainer.sanity_checking or self.global_rank != 0:
            return None
        return run_writer(self.loggers)

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
