"""A residual MLP for voxel rows: (B, in_features) -> logits (B, num_classes)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + W2 relu(W1 norm(x)): a pre-norm residual block of constant width."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(self.norm(x))


class ResMLP(nn.Module):
    """in_features and num_classes come from mrinet (the data); width, depth and dropout from
    the config (mynets/configs/model/net/resmlp.yaml)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 64,
        depth: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
