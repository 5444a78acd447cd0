"""Gradient check: the hand-derived backprop against torch autograd and central differences.

    python -m mrinet.nets.gradcheck --layers 5,8,6,3 --activation sigmoid --cost quadratic \
        --output-activation sigmoid --seed 0 --batch 16

Prints the max relative error per layer (W and b) and exits non-zero above tolerance.
The relative error of a parameter is max|g - g_ref| / max(max|g|, max|g_ref|).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mrinet.nets.backprop import backprop, cost_value
from mrinet.nets.mlp import MLP

TOL_AUTOGRAD = 1e-10
TOL_FINITE_DIFF = 1e-6


def relative_error(grad: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest entry difference relative to the largest entry of either gradient (0 if both 0)."""
    scale = max(float(grad.abs().max()), float(reference.abs().max()))
    diff = float((grad - reference).abs().max())
    return 0.0 if scale == 0.0 else diff / scale


def _cost(net: nn.Module, x: torch.Tensor, y: torch.Tensor, cost: str, out: str) -> torch.Tensor:
    """C(net) on the batch, through the module's own forward (independent of forward_cache)."""
    return cost_value(net(x), y, cost, out)


def autograd_gradients(
    net: nn.Module, x: torch.Tensor, y_onehot: torch.Tensor, cost: str, output_activation: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(dC/dW^l, dC/db^l)] from torch autograd on the same cost."""
    params = [p for linear in net.layers for p in (linear.weight, linear.bias)]
    grads = torch.autograd.grad(_cost(net, x, y_onehot, cost, output_activation), params)
    return [(grads[2 * i], grads[2 * i + 1]) for i in range(len(net.layers))]


def finite_difference_gradients(
    net: nn.Module,
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    cost: str,
    output_activation: str,
    eps: float = 1e-6,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(dC/dW^l, dC/db^l)] by central differences (C(p + eps) - C(p - eps)) / 2 eps per entry."""
    grads = []
    with torch.no_grad():
        for linear in net.layers:
            pair = []
            for param in (linear.weight, linear.bias):
                grad = torch.zeros_like(param)
                flat, flat_grad = param.view(-1), grad.view(-1)
                for i in range(flat.numel()):
                    saved = flat[i].item()
                    flat[i] = saved + eps
                    c_plus = _cost(net, x, y_onehot, cost, output_activation)
                    flat[i] = saved - eps
                    c_minus = _cost(net, x, y_onehot, cost, output_activation)
                    flat[i] = saved
                    flat_grad[i] = (c_plus - c_minus) / (2 * eps)
                pair.append(grad)
            grads.append((pair[0], pair[1]))
    return grads


def check_gradients(
    net: nn.Module,
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    eps: float = 1e-6,
    *,
    cost: str = "quadratic",
    output_activation: str = "sigmoid",
) -> list[dict[str, float]]:
    """Per layer: {'layer', 'W_autograd', 'b_autograd', 'W_finite_diff', 'b_finite_diff'}.

    Use a float64 net and inputs: in float32 rounding dominates both comparisons.
    """
    hand = backprop(net, x, y_onehot, cost=cost, output_activation=output_activation)
    auto = autograd_gradients(net, x, y_onehot, cost, output_activation)
    fd = finite_difference_gradients(net, x, y_onehot, cost, output_activation, eps=eps)
    rows = []
    for index, ((hw, hb), (aw, ab), (fw, fb)) in enumerate(zip(hand, auto, fd), start=1):
        rows.append(
            {
                "layer": index,
                "W_autograd": relative_error(hw, aw),
                "b_autograd": relative_error(hb, ab),
                "W_finite_diff": relative_error(hw, fw),
                "b_finite_diff": relative_error(hb, fb),
            }
        )
    return rows


def random_problem(
    layers: Sequence[int], activation: str, batch: int, seed: int
) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A float64 MLP with sizes `layers` (inputs, hidden..., classes), inputs (B, n_0), one-hot y."""
    if len(layers) < 2:
        raise ValueError(f"--layers needs at least inputs and classes, got {list(layers)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear's initialisation has no generator argument
    net = MLP(layers[0], layers[1:-1], layers[-1], activation=activation).double()
    x = torch.randn(batch, layers[0], generator=generator, dtype=torch.float64)
    labels = torch.randint(0, layers[-1], (batch,), generator=generator)
    y_onehot = torch.nn.functional.one_hot(labels, layers[-1]).to(torch.float64)
    return net, x, y_onehot


def format_table(rows: list[dict[str, float]]) -> str:
    """Fixed-width table, one line per layer."""
    header = f"{'layer':>5}  {'W vs autograd':>14}  {'b vs autograd':>14}  {'W vs fin.diff':>14}  {'b vs fin.diff':>14}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['layer']:>5}  {row['W_autograd']:>14.3e}  {row['b_autograd']:>14.3e}  "
            f"{row['W_finite_diff']:>14.3e}  {row['b_finite_diff']:>14.3e}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the old command path; the command is mrinet.cli.gradcheck
    from mrinet.cli.gradcheck import run

    run()
