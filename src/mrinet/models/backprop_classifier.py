"""The lecture's training loop inside Lightning: hand-derived gradients, then w <- w - lr grad."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mrinet.errors import ConfigError
from mrinet.models.classifier import Classifier
from mrinet.nets.backprop import backprop, check_supported


class BackpropClassifier(Classifier):
    """Classifier trained with `mrinet.nets.backprop.backprop` gradients instead of autograd.

    Lightning's automatic optimisation is off. Each training step computes dC/dW^l, dC/db^l by
    the lecture's equations, writes them into `.grad` and steps the configured optimizer (the
    lecture's `mrinet.nets.backprop.GradientDescent`: w <- w - lr grad; any torch optimizer
    works). Everything else is the Classifier's: cost, metrics, confusion matrices, checkpoints,
    and the per-layer gradient norms, which the GradNormLogger callback logs in Lightning's
    `on_before_optimizer_step` hook, inside the optimizer step. `output_activation` applies to the quadratic cost only;
    cross-entropy is the softmax log-loss, as in the Classifier.
    """

    def __init__(
        self,
        net: nn.Module | Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        loss: str = "quadratic",
        output_activation: str = "sigmoid",
        **classifier_args,
    ) -> None:
        """`classifier_args`: the Classifier's (class_names, standardize_inputs, ...)."""
        if scheduler is not None:
            raise ConfigError(
                "the hand-derived backprop mode steps no learning-rate scheduler",
                "model.scheduler",
                "set model.scheduler=null (plain gradient descent has a fixed lr)",
            )
        super().__init__(
            net, optimizer, loss=loss, output_activation=output_activation, **classifier_args
        )
        self.automatic_optimization = False

    def check_net(self) -> None:
        """The hand-derived gradients exist for the lecture's plain MLP only: fail before training."""
        check_supported(self.net, self.loss_name, self.backprop_output_activation)

    @property
    def backprop_output_activation(self) -> str:
        """The output activation the cost really uses (softmax for cross-entropy)."""
        return "softmax" if self.loss_name == "cross_entropy" else self.output_activation

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (B, n_0) -> what the net sees: the Classifier.forward scaling, a^0."""
        if self.input_mean.numel():
            return (x - self.input_mean) / self.input_std
        return x

    def hand_gradients(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(dC/dW^l, dC/db^l)] of `Classifier.cost` on raw inputs x (B, n_0), labels (B,)."""
        a0 = self.standardized(x)
        y_onehot = F.one_hot(target, self._num_outputs()).to(a0.dtype)
        weight = self.class_weight[target] if self.class_weight.numel() else None
        return backprop(
            self.net,
            a0,
            y_onehot,
            cost=self.loss_name,
            output_activation=self.backprop_output_activation,
            sample_weight=weight,
        )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():  # loss and metrics at the weights the gradient is taken at
            loss = super().training_step(batch, batch_idx)
        grads = self.hand_gradients(batch[0], batch[1])
        for linear, (grad_w, grad_b) in zip(self.net.layers, grads):
            linear.weight.grad, linear.bias.grad = grad_w, grad_b
        self.optimizers().step()  # Lightning counts the step and calls on_before_optimizer_step
        return loss
