"""The lecture's backpropagation over a batch, written with matrix operations and no autograd.

Notation (batch rows are samples, as in torch): a^0 = x (B, n_0), z^l = a^(l-1) W^l^T + b^l
(B, n_l), a^l = sigma(z^l) for hidden layers, a^L = output activation (sigmoid or softmax) of
z^L, which belongs to the cost. With delta^l = dC/dz^l = sigma'(z^l) * dC/da^l:

    dC/da^L = (a^L - y) / N                       (quadratic cost)
    dC/da^l = delta^(l+1) W^(l+1)                 (the lecture's (w^(l+1))^T [sigma' dC/da])
    dC/dW^l = delta^l^T a^(l-1),  dC/db^l = sum over the batch of delta^l

It runs on the same `mrinet.nets.mlp.MLP` the autograd path trains, so both can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mrinet.errors import ConfigError, check_choice

HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")
COSTS = ("quadratic", "cross_entropy")

Grads = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ForwardCache:
    """What backprop needs from the forward pass: z^1..z^L and a^0..a^L (each (B, n_l))."""

    z: list[torch.Tensor]
    a: list[torch.Tensor]


def _sigma(name: str, z: torch.Tensor) -> torch.Tensor:
    """Hidden or output activation by name; 'identity' keeps the logits."""
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.clamp(z, min=0)
    if name == "softmax":
        return torch.softmax(z, dim=-1)
    if name == "identity":
        return z
    raise ConfigError(
        f"activation {name!r} has no hand-derived form",
        "model.net.activation",
        f"use one of {HIDDEN_ACTIVATIONS} (softmax/sigmoid for outputs)",
    )


def _sigma_prime(name: str, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """sigma'(z) by hand, reusing a = sigma(z): sigmoid a(1-a), tanh 1-a^2, relu step(z)."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (z > 0).to(z.dtype)  # 0 at the kink, as torch's relu backward
    raise ConfigError(
        f"activation {name!r} has no hand-derived derivative",
        "model.net.activation",
        f"use one of {HIDDEN_ACTIVATIONS}",
    )


def check_supported(net: nn.Module, cost: str, output_activation: str) -> None:
    """Raise ConfigError unless backprop covers this net, cost and output activation."""
    _check_net(net)
    _check_cost(cost, output_activation)


def _check_net(net: nn.Module) -> None:
    """The lecture's equations cover only plain dense layers with sigmoid, tanh or relu."""
    if not getattr(net, "plain", False):
        raise ConfigError(
            "hand-derived backprop covers only the plain lecture MLP (no dropout, no batch norm)",
            "model.net.dropout / model.net.batch_norm",
            "set model.net.dropout=0 and model.net.batch_norm=false, or train with autograd",
        )
    if net.activation_name not in HIDDEN_ACTIVATIONS:
        _sigma(net.activation_name, torch.zeros(1))  # raises the ConfigError for the name


def _check_cost(cost: str, output_activation: str) -> None:
    """Cross-entropy is the softmax log-loss; quadratic cost takes sigmoid or softmax outputs."""
    check_choice(cost, COSTS, "model.loss", "cost")
    check_choice(
        output_activation, OUTPUT_ACTIVATIONS, "model.output_activation", "output activation"
    )
    if cost == "cross_entropy" and output_activation != "softmax":
        raise ConfigError(
            "cross-entropy is defined here with softmax outputs only",
            "model.output_activation",
            "set model.output_activation=softmax for model.loss=cross_entropy",
        )


def forward_cache(
    net: nn.Module, x: torch.Tensor, output_activation: str = "identity"
) -> ForwardCache:
    """Forward pass x (B, n_0) that keeps z^l and a^l of every layer; a^L = output_act(z^L)."""
    _check_net(net)
    a = [x]
    z: list[torch.Tensor] = []
    for index, linear in enumerate(net.layers):
        z.append(a[-1] @ linear.weight.T + linear.bias)
        last = index == len(net.layers) - 1
        a.append(_sigma(output_activation if last else net.activation_name, z[-1]))
    return ForwardCache(z=z, a=a)


def _normaliser(
    cost: str, y_onehot: torch.Tensor, sample_weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Per-sample weights w (B, 1) and the divisor: N, or sum(w) for weighted cross-entropy.

    Matches torch: F.cross_entropy(weight=...) divides by the summed weights, the quadratic cost
    of mrinet.models.classifier by N.
    """
    if sample_weight is None:
        return torch.ones_like(y_onehot[:, :1]), float(y_onehot.shape[0])
    w = sample_weight.to(y_onehot.dtype).reshape(-1, 1)
    return w, (w.sum() if cost == "cross_entropy" else float(y_onehot.shape[0]))


def cost_value(
    logits: torch.Tensor,
    y_onehot: torch.Tensor,
    cost: str,
    output_activation: str,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar cost of logits z^L (B, K) against one-hot targets (B, K), averaged over the batch.

    quadratic: 1/(2N) sum_x w_x ||y_x - a_x||^2; cross_entropy: -sum_x w_x y_x.log a_x / sum w.
    `sample_weight` (B,) is optional (class weights picked per sample); None means all ones.
    """
    _check_cost(cost, output_activation)
    w, divisor = _normaliser(cost, y_onehot, sample_weight)
    if cost == "cross_entropy":
        return -(w * y_onehot * torch.log_softmax(logits, dim=-1)).sum() / divisor
    a = _sigma(output_activation, logits)
    return 0.5 * (w * (y_onehot - a) ** 2).sum() / divisor


def output_delta(
    cache: ForwardCache,
    y_onehot: torch.Tensor,
    cost: str,
    output_activation: str,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """delta^L = dC/dz^L (B, K) for the cost and output activation (the chain through a^L)."""
    a_out = cache.a[-1]
    w, divisor = _normaliser(cost, y_onehot, sample_weight)
    if cost == "cross_entropy":  # softmax + log-loss: sigma' cancels, delta = (a - y) / N
        return w * (a_out - y_onehot) / divisor
    dc_da = w * (a_out - y_onehot) / divisor  # dC/da^L of the quadratic cost
    if output_activation == "sigmoid":
        return dc_da * a_out * (1 - a_out)
    # softmax Jacobian times a vector: da_j/dz_k = a_j (delta_jk - a_k)
    return a_out * (dc_da - (dc_da * a_out).sum(dim=-1, keepdim=True))


def backprop(
    net: nn.Module,
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    cost: str = "quadratic",
    output_activation: str = "sigmoid",
    sample_weight: torch.Tensor | None = None,
) -> Grads:
    """Hand-derived [(dC/dW^l (n_l, n_(l-1)), dC/db^l (n_l,)) for l = 1..L], no autograd.

    x (B, n_0), y_onehot (B, K); optional sample_weight (B,) as in `cost_value`.
    """
    _check_cost(cost, output_activation)
    with torch.no_grad():
        cache = forward_cache(net, x, output_activation)
        y_onehot = y_onehot.to(cache.a[-1].dtype)
        delta = output_delta(cache, y_onehot, cost, output_activation, sample_weight)
        grads: Grads = []
        for index in range(len(net.layers) - 1, -1, -1):
            grads.append((delta.T @ cache.a[index], delta.sum(dim=0)))
            if index > 0:
                dc_da = delta @ net.layers[index].weight  # (B, n_(l-1))
                delta = dc_da * _sigma_prime(
                    net.activation_name, cache.z[index - 1], cache.a[index]
                )
    return grads[::-1]


def gradient_descent_step(net: nn.Module, grads: Grads, lr: float) -> None:
    """Plain gradient descent in place: W^l <- W^l - lr dC/dW^l, b^l <- b^l - lr dC/db^l."""
    if len(grads) != len(net.layers):
        raise ValueError(f"{len(grads)} gradient pairs for a net with {len(net.layers)} layers")
    with torch.no_grad():
        for linear, (grad_w, grad_b) in zip(net.layers, grads):
            linear.weight -= lr * grad_w
            linear.bias -= lr * grad_b


class GradientDescent(torch.optim.Optimizer):
    """Plain gradient descent as a torch optimizer: p <- p - lr p.grad, no momentum, no decay.

    Same arithmetic as `gradient_descent_step`, so hand-derived gradients written into .grad and
    an optimizer step move the weights by exactly -lr grad (torch.optim.SGD fuses the multiply
    and add, which differs in the last bit). Lets Lightning count steps and monitor lr.
    """

    def __init__(self, params, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        super().__init__(params, {"lr": float(lr)})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param -= group["lr"] * param.grad
        return loss


def autograd_grads(net: nn.Module) -> Grads:
    """The .grad of every layer as [(dW, db)], so both modes share the diagnostics below."""
    return [(linear.weight.grad, linear.bias.grad) for linear in net.layers]


def gradient_norms(grads: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Frobenius norm per layer and parameter, keys 'layer{l}/W' and 'layer{l}/b' (l from 1)."""
    norms: dict[str, float] = {}
    for index, (grad_w, grad_b) in enumerate(grads, start=1):
        if grad_w is not None:
            norms[f"layer{index}/W"] = float(torch.linalg.vector_norm(grad_w))
        if grad_b is not None:
            norms[f"layer{index}/b"] = float(torch.linalg.vector_norm(grad_b))
    return norms


def saturated_share(z: torch.Tensor, activation: str, threshold: float = 0.01) -> torch.Tensor:
    """Fraction of units (entries of z, any shape) that barely learn because sigma'(z) is tiny,
    as a 0-d float64 tensor on z's device (no host sync).

    sigmoid: sigma'(z) < threshold (0.01, i.e. |z| > 4.6). tanh: the same criterion on the
    rescaled sigmoid, since tanh(z) = 2 sigmoid(2z) - 1: tanh'(z) < 4 threshold (|z| > 2.3).
    relu: dead units, z <= 0 (sigma' = 0).
    """
    if z.numel() == 0:
        raise ValueError("saturation_fraction needs at least one pre-activation")
    z = z.detach()
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        saturated = s * (1 - s) < threshold
    elif activation == "tanh":
        saturated = 1 - torch.tanh(z) ** 2 < 4 * threshold
    elif activation == "relu":
        saturated = z <= 0
    else:
        raise ValueError(f"saturation is defined for {HIDDEN_ACTIVATIONS}, not {activation!r}")
    return saturated.to(torch.float64).mean()


def saturation_fraction(z: torch.Tensor, activation: str, threshold: float = 0.01) -> float:
    """`saturated_share` as a Python float."""
    return float(saturated_share(z, activation, threshold))
