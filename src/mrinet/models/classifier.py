"""Classifier LightningModule: a plain net + a cost + an optimizer recipe + metrics.

Where a prediction comes from, in one place: raw inputs -> `forward` (standardised with the
training statistics, then the net) -> logits -> the `DecisionRule` (mrinet.models.decision:
`decide` for the class, `proba` for probabilities; its offsets are the checkpoint's
`logit_offset`). Costs live in mrinet.models.losses, Dice in mrinet.models.metrics, figures and
gradient norms in callbacks (mrinet.callbacks: ConfusionMatrixFigure, GradNormLogger).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from mrinet.callbacks.confusion_figure import ConfusionMatrixFigure
from mrinet.callbacks.figures import FigureSchedule
from mrinet.callbacks.grad_norms import GradNormLogger
from mrinet.data.contract import BatchGroup, DataSpec
from mrinet.errors import ConfigError, check_choice
from mrinet.models.decision import DECISIONS, DecisionRule, offsets_at_top_level, per_channel
from mrinet.models.grouped_steps import GroupedSteps
from mrinet.models.losses import LOSSES, labelled_voxels, soft_dice_loss  # noqa: F401 (re-export)
from mrinet.models.metrics import (
    ConfusionCounts,
    batch_confusion,
    confusion_metric_names,
    confusion_metrics,
)
from mrinet.models.net_builder import (
    build_net,
    check_logits,
    check_signature,
    check_sizes,
    net_target,
    num_outputs,
)
from mrinet.models.optimizers import optimizers
from mrinet.models.run_writer import run_writer
from mrinet.models.saved_state import DATA_BUFFERS, saved_sizes

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


class Classifier(GroupedSteps, pl.LightningModule):
    """Trains any net that maps inputs to class logits (MLP on voxels, CNN on images).

    What the model needs from its data arrives as one `DataSpec` (`set_data_spec`, called by
    the entry point after `datamodule.setup`; stored in the checkpoint): class names, and the
    training split's input statistics and class weights as buffers, so inputs are standardised
    inside the model and a checkpoint predicts on raw data. `net` is a module, or a factory
    (a net config with `_partial_: true`) that `set_data_spec` calls with the data's input
    width and class count (mrinet.models.net_builder).
    Metrics come from one confusion matrix per stage, summed on the device each step (no host
    sync), turned into accuracy, balanced accuracy and Dice/F1 at epoch end (DDP-exact).
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
        figures_every_n_epochs: int | None = 1,
        decision: str = "argmax",
    ) -> None:
        super().__init__()
        for key, value in (
            ("model.steps_per_batch", steps_per_batch),
            ("model.figures_every_n_epochs", figures_every_n_epochs or 1),
        ):
            if int(value) < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}", key, f"e.g. {key}=1")
        check_choice(loss, tuple(LOSSES), "model.loss")
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
        self.loss_fn = LOSSES[loss]
        self.class_names = list(class_names) if class_names else None
        self.standardize_inputs = standardize_inputs
        self.grad_norm_every_n_steps = grad_norm_every_n_steps
        # validation figures (~0.1-1 s each): every n epochs and the last, or (None) in 5 % of the time
        self.figures_every_n_epochs = figures_every_n_epochs and int(figures_every_n_epochs)
        self.figure_schedule = FigureSchedule(self.figures_every_n_epochs)
        # k > 1: each loader item is a list of k batches, one optimizer step each (`training_step`)
        self.steps_per_batch = int(steps_per_batch)
        self.data_spec: DataSpec | None = None
        if self.steps_per_batch > 1:
            self.automatic_optimization = False
        for name in DATA_BUFFERS:  # set by set_data_spec
            self.register_buffer(name, torch.ones(0) if name == "input_std" else torch.zeros(0))
        sigmoid = loss == "quadratic" and output_activation == "sigmoid"
        self.decision_rule = DecisionRule(decision, "sigmoid" if sigmoid else "softmax")
        # checkpoints keep the rule's offsets at the key `logit_offset` (as before the rule)
        self.register_state_dict_post_hook(offsets_at_top_level)
        self.register_load_state_dict_pre_hook(saved_sizes)
        self._val_logits: list[tuple[torch.Tensor, torch.Tensor]] = []  # for decision=tuned
        self._confmats = nn.ModuleDict()  # one ConfusionCounts per stage, synced at epoch end
        self._counts: dict[str, torch.Tensor] = {}  # this process's counts of the running epoch
        self._loss_sums: dict[str, list[torch.Tensor]] = {}
        self.confusion: dict[str, torch.Tensor] = {}  # the last epoch's counts per stage (figures)
        if built:
            self.check_net()
        else:
            check_signature(net)  # before the data is read: sizes by name, or a clear error

    def check_net(self) -> None:
        """Refuse a net this model cannot train, once it is built (subclasses add checks)."""

    @classmethod
    def validation_metrics(cls, class_names: Sequence[str] | None = None) -> list[str]:
        """What each validation epoch logs (`_epoch_end`), so a sweep can check a pruner's
        optimized_metric before any trial runs; unknown classes give `val/dice_*` patterns."""
        return [f"val/{k}" for k in confusion_metric_names(class_names)] + ["val/loss"]

    @property
    def logit_offset(self) -> torch.Tensor:
        """The decision rule's per-class offsets (C,) (empty: plain argmax)."""
        return self.decision_rule.logit_offset

    @logit_offset.setter
    def logit_offset(self, value: torch.Tensor) -> None:
        self.decision_rule.logit_offset = value

    # ---- data-derived state (the DataSpec), saved in the checkpoint ------------------------
    def set_data_spec(self, spec: DataSpec) -> None:
        """Take what the model needs from its data: class names, input scaling, class weights."""
        if not isinstance(spec, DataSpec):
            raise TypeError(f"set_data_spec takes a mrinet.data.spec.DataSpec, got {type(spec)}")
        check_sizes(spec, self.class_names, None)
        if self.net is None:  # the first layer and the output layer come from the data
            self.net, self.net_sizes = build_net(self.net_factory, spec)
            self.check_net()
        check_sizes(spec, None, self._num_outputs())
        self.data_spec = spec
        self.class_names = self.class_names or list(spec.classes)
        mean, std = spec.tensor("input_mean"), spec.tensor("input_std")
        if self.standardize_inputs and mean is not None:
            self.input_mean, self.input_std = mean.to(self.device), std.to(self.device)
        else:
            self.input_mean, self.input_std = torch.zeros(0), torch.ones(0)
        weights = spec.tensor("class_weights")
        self.class_weight = torch.zeros(0) if weights is None else weights.to(self.device)
        self.decision_rule.reset(spec.num_classes, self.class_weight)

    def setup(self, stage: str) -> None:
        if self.data_spec is None:
            raise ConfigError(
                f"{type(self).__name__} has no DataSpec for stage {stage!r}",
                "model",
                "call model.set_data_spec(datamodule.data_spec()) after datamodule.setup() "
                "(mrinet.train does), or build the model from a checkpoint (run.checkpoints.build_model)",
            )
        if stage == "fit" and self.steps_per_batch > 1 and self.trainer.world_size > 1:
            # DDP: one backward per forward of its wrapper (the loader serves single batches too)
            self.steps_per_batch, self.automatic_optimization = 1, True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.data_spec is not None:
            checkpoint["data_spec"] = self.data_spec.to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "data_spec" in checkpoint:
            self.data_spec = DataSpec.from_dict(checkpoint["data_spec"])
            self.class_names = self.class_names or list(self.data_spec.classes)

    # ---- where a prediction comes from -----------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw rows (N, F) or volumes (B, F, X, Y, Z) -> logits (N, C) or (B, C, X, Y, Z), after
        standardising each feature (channel) with the training statistics."""
        if self.input_mean.numel():
            x = (x - per_channel(self.input_mean, x)) / per_channel(self.input_std, x)
        return self.net(x)

    def decide(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) or (B, C, ...) -> predicted class (N,) or (B, ...) (the decision rule)."""
        return self.decision_rule.decide(logits)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> `predict_proba`'s probabilities (shared with mrinet.run.export_graph)."""
        return self.decision_rule.proba(logits)

    def predict_classes(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> predicted class indices by the model's decision rule."""
        return self.decide(self(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs -> the decision rule's probabilities (argmax: `predict_classes`)."""
        return self.probabilities(self(x))

    def cost(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training cost named by model.loss (mrinet.models.losses), class-weighted."""
        weight = self.class_weight if self.class_weight.numel() else None
        return self.loss_fn(logits, target, self.output_activation, weight)

    # ---- steps -----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else self._num_outputs()

    def _num_outputs(self) -> int | None:
        return None if self.net is None else num_outputs(self.net)  # None: built by set_data_spec

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        if self.class_names and (logits.ndim < 2 or logits.shape[1] != len(self.class_names)):
            check_logits(logits, len(self.class_names), net_target(type(self.net)))
        dense = None
        if logits.ndim > 2:  # a segmentation net: its labelled voxels are the samples
            dense, (logits, y) = logits, labelled_voxels(logits, y)
        # nothing labelled (a DDP rank's filler volume): no cost, but the rank joins the syncs
        loss = self.cost(logits, y) if len(y) or dense is None else dense.sum() * 0.0
        if stage == "val" and self.decision == "tuned":  # the epoch end re-scores them
            self._val_logits.append((logits.detach(), y))
        counts = batch_confusion(self.decide(logits.detach()), y, logits.shape[1])
        self._counts[stage] = counts if stage not in self._counts else self._counts[stage] + counts
        # epoch loss = the cost over the whole epoch: each batch weighted by what its cost divides by
        norm = self._cost_normalizer(y, counts)
        sums = self._loss_sums.setdefault(stage, [torch.zeros((), device=loss.device), 0.0])
        sums[0] = sums[0] + loss.detach() * norm
        sums[1] = sums[1] + norm
        return loss

    def _cost_normalizer(self, y: torch.Tensor, counts: torch.Tensor):
        """What the batch's cost divides by: sum of the targets' class weights (weighted CE) or N."""
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

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    # ---- epoch ends: the decision rule, metrics ---------------------------------------------
    def _tune_decision(self) -> torch.Tensor | None:
        """decision=tuned: fit the offsets to the epoch's logits (DDP: rank 0's); its counts."""
        stored, self._val_logits = self._val_logits, []
        if not stored:
            return None
        logits = torch.cat([s[0] for s in stored])
        target = torch.cat([s[1] for s in stored])
        counts = None
        if len(target):
            offsets, counts = self.decision_rule.tune(logits, target, self.class_weight)
        else:  # this rank saw no labelled voxel: rank 0's offsets arrive by broadcast
            offsets = self.logit_offset.detach().clone()
        if self._trainer is not None and self.trainer.world_size > 1:
            offsets, counts = self.trainer.strategy.broadcast(offsets, src=0), None
        self.logit_offset = offsets.to(self.device)
        if counts is None:  # other offsets than this rank's tuning scored
            counts = batch_confusion(self.decide(logits), target, logits.shape[1])
        return counts

    def _epoch_end(self, stage: str) -> None:
        counts = self._counts.pop(stage, None)
        if stage == "val" and self.decision == "tuned" and not self.trainer.sanity_checking:
            tuned = self._tune_decision()
            counts = tuned if tuned is not None else counts
        self._val_logits = []
        if counts is None:
            return
        key = f"confmat_{stage}"  # ModuleDict keys must not shadow Module attributes ("train")
        if key not in self._confmats:
            self._confmats[key] = ConfusionCounts(counts.shape[0]).to(self.device)
        confmat = self._confmats[key].summed(counts)  # over ranks under DDP
        total, count = self._loss_sums.pop(stage, (torch.zeros(()), 0.0))
        count_t = torch.as_tensor(count, dtype=torch.float32, device=self.device)
        total = total.to(self.device)
        if self.trainer.world_size > 1:
            total, count_t = self.all_gather(total).sum(), self.all_gather(count_t).sum()
        names = self.class_names or [str(i) for i in range(confmat.shape[0])]
        metrics = {f"{stage}/{k}": v for k, v in confusion_metrics(confmat, names).items()}
        metrics[f"{stage}/loss"] = total / count_t.clamp(min=1)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, sync_dist=False)
        self.confusion[stage] = confmat.detach()

    def figures_now(self, stage: str) -> bool:
        """Draw figures now? Test: always; validation: by the model's FigureSchedule."""
        if stage != "val" or not self._trainer:
            return True
        last = self.trainer.max_epochs
        return self.figure_schedule.now(self.current_epoch, last - 1 if last else None)

    def on_train_start(self) -> None:
        self.figure_schedule.start()

    def on_train_epoch_end(self) -> None:
        self.write_step_metrics()
        self._epoch_end("train")
        if self.steps_per_batch > 1:
            self.on_train_epoch_end_schedulers()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # ---- what the run writes beside the scalars: figures and gradient norms (callbacks) -----
    def configure_callbacks(self) -> list[pl.Callback]:
        """Figures and gradient norms every run logs (a run's own instance of one wins)."""
        have = {type(c) for c in self.trainer.callbacks} if self._trainer else set()
        wanted = [ConfusionMatrixFigure(), GradNormLogger(self.grad_norm_every_n_steps)]
        return [c for c in wanted if type(c) not in have]

    def tensorboard(self):
        """The run's figure writer (mrinet.models.run_writer.RunWriter), None off rank 0."""
        if not self._trainer or self.trainer.sanity_checking or self.global_rank != 0:
            return None
        return run_writer(self.loggers)

    # ---- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        factories = (self.optimizer_factory, self.scheduler_factory)
        return optimizers(self.parameters(), *factories, self.hparams.scheduler_monitor)
