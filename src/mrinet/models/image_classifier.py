"""Classifier for images: adds example images, ROC/AUROC and parameter counts to TensorBoard."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mrinet.models.classifier import Classifier
from mrinet.nets.cnn import conv_layer_parameters, dense_layer_parameters, parameter_counts


class ImageClassifier(Classifier):
    """The Classifier with image-specific logging (the training itself is unchanged).

    Per validation/test epoch: for two classes `<stage>/auroc` (scalar; class 1 is the positive
    class, e.g. "accelerated"); figures (a grid of example images titled with true and predicted
    label, the ROC curve) every `figures_every_n_epochs` validation epochs, the last one and
    every test. At fit start: parameters per layer of the net, next to
    those of one dense layer and one 3x3 conv on the same input size (the lecture's argument).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_examples: int = 16,
        image_size: Sequence[int] = (320, 320),
        standardize_inputs: bool = False,
        **classifier_args,
    ) -> None:
        """`classifier_args`: the Classifier's (loss, class_names, scheduler, figures, ...)."""
        super().__init__(net, optimizer, standardize_inputs=standardize_inputs, **classifier_args)
        self.num_examples = int(num_examples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self._last_logits: torch.Tensor | None = None
        self._scores: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._examples: dict[str, list[tuple[torch.Tensor, int, int, float]]] = {}

    @classmethod
    def validation_metrics(cls, class_names: Sequence[str] | None = None) -> list[str]:
        """The Classifier's, and `val/auroc` for two classes (`_image_epoch_end`)."""
        binary = class_names is None or len(class_names) == 2
        return super().validation_metrics(class_names) + (["val/auroc"] if binary else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if not self.training:
            self._last_logits = logits.detach()  # read by _collect after each eval step
        return logits

    # ---- collect scores and examples during evaluation -------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._collect(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._collect(batch, "test")

    def _collect(self, batch, stage: str) -> None:
        x, y = batch[0], batch[1]
        probs = torch.softmax(self._last_logits.float(), dim=1)
        self._scores.setdefault(stage, []).append((probs, y.detach()))  # to the host at epoch end
        examples = self._examples.setdefault(stage, [])
        num_classes = probs.shape[1]
        per_class = max(self.num_examples // num_classes, 1)
        if len(examples) >= per_class * num_classes or not self.figures_now(stage):
            return  # the examples are read from the device only on figure epochs, until full
        taken = torch.bincount(
            torch.tensor([e[1] for e in examples], dtype=torch.long), minlength=num_classes
        )
        pred = probs.argmax(1)
        for i in range(len(y)):
            label = int(y[i])
            if label < num_classes and taken[label] < per_class:
                examples.append((x[i].detach().cpu(), label, int(pred[i]), float(probs[i, label])))
                taken[label] += 1

    # ---- epoch ends ------------------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._image_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._image_epoch_end("test")

    def _gathered_scores(self, stage: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        parts = self._scores.pop(stage, [])
        if not parts:
            return None
        probs = torch.cat([p for p, _ in parts]).cpu()
        target = torch.cat([t for _, t in parts]).cpu()
        if self._trainer and self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (probs, target))
            probs = torch.cat([p for p, _ in gathered])
            target = torch.cat([t for _, t in gathered])
        return probs, target

    def _image_epoch_end(self, stage: str) -> None:
        scores = self._gathered_scores(stage)
        examples = self._examples.pop(stage, [])
        if scores is None:
            return
        probs, target = scores
        names = self.class_names or [str(i) for i in range(probs.shape[1])]
        auroc = None
        if probs.shape[1] == 2 and 0 < int(target.sum()) < len(target):  # AUROC: both classes
            from torchmetrics.functional.classification import binary_auroc

            auroc = binary_auroc(probs[:, 1], target)
            self.log(f"{stage}/auroc", auroc.to(self.device), on_step=False, on_epoch=True)
        writer = self.tensorboard()
        if writer is None or not self.figures_now(stage):
            return
        with self.figure_schedule.timed():
            self._draw(stage, examples, names, probs, target, auroc)

    def _draw(self, stage, examples, names, probs, target, auroc) -> None:
        writer, step, epoch = self.tensorboard(), self.global_step, self.current_epoch
        if examples:
            fig = example_grid_figure(examples, names, f"{stage} examples (epoch {epoch})")
            writer.add_figure(f"{stage}/examples", fig, global_step=step, close=True)
        if auroc is not None:
            from torchmetrics.functional.classification import binary_roc

            fpr, tpr, _ = binary_roc(probs[:, 1], target)
            fig = roc_figure(
                fpr.numpy(), tpr.numpy(), float(auroc), f"{stage} ROC, positive: {names[1]}"
            )
            writer.add_figure(f"{stage}/roc", fig, global_step=step, close=True)

    # ---- parameter counts at fit start -----------------------------------------------------
    def on_fit_start(self) -> None:
        writer = self.tensorboard()
        if writer is None:
            return

        height, width = self.image_size
        pixels = height * width
        counts = parameter_counts(self.net)
        dense = dense_layer_parameters(pixels, pixels)
        conv = conv_layer_parameters(1, 1, 3)
        lines = [
            f"## Parameters of {type(self.net).__name__}",
            "",
            "| layer | parameters |",
            "|---|---:|",
            *[f"| {name} | {count:,} |" for name, count in counts.items()],
            "",
            f"## One layer on {height}x{width} inputs",
            "",
            "| layer | parameters |",
            "|---|---:|",
            f"| dense {height}*{width} -> {height}*{width} | {dense:,} ({dense:.2e}) |",
            f"| 3x3 conv, 1 -> 1 channel | {conv:,} |",
        ]
        writer.add_text("parameters", "\n".join(lines), global_step=0)
        writer.add_scalar("parameters/net_total", counts["total"], 0)
        writer.add_scalar(f"parameters/dense_{height}x{width}_to_{height}x{width}", dense, 0)
        writer.add_scalar("parameters/conv3x3_1_to_1", conv, 0)


# ---- figures (matplotlib imported only when a figure is drawn) ---------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def example_grid_figure(
    examples: Sequence[tuple[torch.Tensor, int, int, float]], class_names: Sequence[str], title: str
):
    """Grid of images (1, H, W) titled "true / pred (p(true))"; wrong predictions in red."""
    plt = _pyplot()
    cols = min(4, len(examples))
    rows = -(-len(examples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, true, pred, prob) in zip(axes.ravel(), examples):
        ax.imshow(image.float().squeeze(0).numpy(), cmap="gray")
        color = "green" if true == pred else "red"
        ax.set_title(
            f"true: {class_names[true]}\npred: {class_names[pred]} (p={prob:.2f})",
            color=color,
            fontsize=8,
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float, title: str):
    """ROC curve (true vs false positive rate) with the chance diagonal and the AUROC."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
