"""The lecture's multilayer perceptron: z^l = W^l a^(l-1) + b^l, a^l = sigma(z^l)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from mrinet.errors import check_choice

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by the name used in configs (sigmoid, tanh, relu, ...)."""
    return ACTIVATIONS[check_choice(name, sorted(ACTIVATIONS), "model.net.activation")]()


class MLP(nn.Module):
    """Fully connected net (B, in_features) -> logits z^L (B, num_classes).

    `layers` holds the nn.Linear of every layer (W^l has shape (n_l, n_(l-1)) as in the
    lecture), so the hand-derived backprop in mrinet.nets.backprop can run on the same module.
    The output activation (softmax or sigmoid) belongs to the cost, not to the net.
    """

    def __init__(
        self,
        in_features: int,
        hidden_dims: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        dims = [int(in_features), *[int(h) for h in hidden_dims], int(num_classes)]
        self.activation_name = activation
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(d) if batch_norm else nn.Identity() for d in dims[1:-1]
        )
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.plain = not batch_norm and dropout == 0  # pure lecture form: backprop applies

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activations z^l of every hidden layer (B, n_l), for saturation diagnostics."""
        zs = []
        for linear, norm in zip(self.layers[:-1], self.norms):
            z = norm(linear(x))
            zs.append(z)
            x = self.drop(self.act(z))
        return zs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm in zip(self.layers[:-1], self.norms):
            x = self.drop(self.act(norm(linear(x))))
        return self.layers[-1](x)
