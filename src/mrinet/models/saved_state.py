"""How a Classifier's state dict maps onto a freshly built model: buffers sized by the data."""

from __future__ import annotations

import torch
from torch import nn

DATA_BUFFERS = ("input_mean", "input_std", "class_weight")  # sized by the data (DataSpec)


def saved_sizes(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Data-sized buffers take the checkpoint's size; `logit_offset` (if any) goes to the rule
    (a load_state_dict pre-hook: checkpoints from before the DecisionRule keep loading)."""
    offsets = state_dict.pop(prefix + "logit_offset", torch.zeros(0))
    state_dict.setdefault(prefix + "decision_rule.logit_offset", offsets)
    for name in DATA_BUFFERS:
        if prefix + name in state_dict:
            setattr(module, name, torch.empty_like(state_dict[prefix + name]))
