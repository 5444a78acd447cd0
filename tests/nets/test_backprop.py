"""The hand-derived backprop equals torch autograd and central differences on the lecture MLP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mrinet.cli.gradcheck import main as gradcheck_main
from mrinet.errors import ConfigError
from mrinet.nets.backprop import (
    autograd_grads,
    backprop,
    cost_value,
    forward_cache,
    gradient_descent_step,
    gradient_norms,
    saturation_fraction,
)
from mrinet.nets.gradcheck import (
    autograd_gradients,
    check_gradients,
    random_problem,
    relative_error,
)
from mrinet.nets.mlp import MLP

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("quadratic", "sigmoid"),
    ("quadratic", "softmax"),
    ("cross_entropy", "softmax"),
]
SHAPES = [[5, 3], [5, 8, 3], [5, 8, 6, 3], [4, 16, 2, 7, 10]]


@pytest.mark.parametrize("layers", SHAPES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize(("cost", "output_activation"), PAIRS, ids=lambda v: v)
def test_hand_derived_gradients_equal_autograd_in_float64(
    layers, activation, cost, output_activation
):
    net, x, y = random_problem(layers, activation, batch=16, seed=3)
    hand = backprop(net, x, y, cost=cost, output_activation=output_activation)
    auto = autograd_gradients(net, x, y, cost, output_activation)
    assert len(hand) == len(net.layers)
    for (hw, hb), (aw, ab), linear in zip(hand, auto, net.layers):
        assert hw.shape == linear.weight.shape and hb.shape == linear.bias.shape
        assert float((hw - aw).abs().max()) < 1e-10 * max(1.0, float(aw.abs().max()))
        assert float((hb - ab).abs().max()) < 1e-10 * max(1.0, float(ab.abs().max()))
        assert relative_error(hw, aw) < 1e-10 and relative_error(hb, ab) < 1e-10


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize(("cost", "output_activation"), PAIRS, ids=lambda v: v)
def test_hand_derived_gradients_match_central_differences(activation, cost, output_activation):
    net, x, y = random_problem([4, 6, 5, 3], activation, batch=8, seed=1)
    rows = check_gradients(net, x, y, cost=cost, output_activation=output_activation)
    assert [row["layer"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["W_finite_diff"] < 1e-6 and row["b_finite_diff"] < 1e-6
        assert row["W_autograd"] < 1e-10 and row["b_autograd"] < 1e-10


@pytest.mark.parametrize(("cost", "output_activation"), PAIRS, ids=lambda v: v)
def test_sample_weighted_costs_match_torch_and_autograd(cost, output_activation):
    net, x, y = random_problem([5, 7, 3], "tanh", batch=16, seed=5)
    weight = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)[y.argmax(dim=1)]
    if cost == "cross_entropy":  # torch's weighted mean divides by the summed weights
        reference = torch.nn.functional.cross_entropy(
            net(x), y.argmax(dim=1), weight=torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
        )
        value = cost_value(net(x), y, cost, output_activation, sample_weight=weight)
        assert float(value.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
    value = cost_value(net(x), y, cost, output_activation, sample_weight=weight)
    params = [p for lin in net.layers for p in (lin.weight, lin.bias)]
    auto = torch.autograd.grad(value, params)
    hand = backprop(net, x, y, cost, output_activation, sample_weight=weight)
    for (hw, hb), aw, ab in zip(hand, auto[0::2], auto[1::2]):
        assert relative_error(hw, aw) < 1e-10 and relative_error(hb, ab) < 1e-10


def test_gradient_check_detects_a_wrong_gradient():
    net, x, y = random_problem([4, 6, 3], "sigmoid", batch=8, seed=0)
    hand = backprop(net, x, y)
    auto = autograd_gradients(net, x, y, "quadratic", "sigmoid")
    assert relative_error(hand[0][0] * 1.01, auto[0][0]) == pytest.approx(0.01 / 1.01, rel=1e-9)


def test_quadratic_cost_is_the_lecture_formula():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    a = torch.sigmoid(logits)
    expected = (((y - a) ** 2).sum(dim=1) / 2).mean()
    assert float(cost_value(logits, y, "quadratic", "sigmoid")) == pytest.approx(float(expected))
    ce = torch.nn.functional.cross_entropy(logits, y.argmax(dim=1))
    assert float(cost_value(logits, y, "cross_entropy", "softmax")) == pytest.approx(float(ce))


def test_forward_cache_keeps_every_layer_and_matches_the_module():
    net, x, _ = random_problem([5, 8, 6, 3], "tanh", batch=4, seed=0)
    cache = forward_cache(net, x, output_activation="softmax")
    assert [z.shape[1] for z in cache.z] == [8, 6, 3]
    assert len(cache.a) == 4 and cache.a[0] is x
    torch.testing.assert_close(cache.z[-1], net(x))
    torch.testing.assert_close(cache.a[-1], torch.softmax(net(x), dim=1))
    torch.testing.assert_close(torch.stack(net.hidden(x)[:1]), torch.stack(cache.z[:1]))


def test_gradient_descent_step_moves_weights_by_exactly_minus_lr_times_grad():
    net, x, y = random_problem([5, 8, 3], "sigmoid", batch=16, seed=2)
    before = [(lin.weight.clone(), lin.bias.clone()) for lin in net.layers]
    grads = backprop(net, x, y)
    gradient_descent_step(net, grads, lr=0.5)
    for (w0, b0), (gw, gb), lin in zip(before, grads, net.layers):
        assert torch.equal(lin.weight, w0 - 0.5 * gw)
        assert torch.equal(lin.bias, b0 - 0.5 * gb)
        assert not torch.equal(lin.weight, w0)


def test_gradient_descent_lowers_the_quadratic_cost():
    net, x, y = random_problem([5, 8, 3], "sigmoid", batch=32, seed=4)
    with torch.no_grad():
        c0 = float(cost_value(net(x), y, "quadratic", "sigmoid"))
        for _ in range(20):
            gradient_descent_step(net, backprop(net, x, y), lr=1.0)
        assert float(cost_value(net(x), y, "quadratic", "sigmoid")) < c0


@pytest.mark.parametrize("kwargs", [{"dropout": 0.2}, {"batch_norm": True}])
def test_backprop_refuses_nets_outside_the_lecture_equations(kwargs):
    net = MLP(5, [8], 3, activation="sigmoid", **kwargs)
    x, y = torch.randn(4, 5), torch.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(ConfigError, match="plain lecture MLP"):
        backprop(net, x, y)


def test_backprop_refuses_unknown_activation_and_cost_combinations():
    x, y = torch.randn(4, 5), torch.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(ConfigError, match="gelu"):
        backprop(MLP(5, [8], 3, activation="gelu"), x, y)
    net = MLP(5, [8], 3, activation="sigmoid")
    with pytest.raises(ConfigError, match="softmax outputs only"):
        backprop(net, x, y, cost="cross_entropy", output_activation="sigmoid")
    with pytest.raises(ConfigError, match="unknown cost"):
        backprop(net, x, y, cost="hinge")


def test_saturation_fraction_on_known_pre_activations():
    # sigmoid'(z) < 0.01 beyond |z| = 4.5951; tanh' < 0.04 beyond |z| = 2.2976
    z = torch.tensor([-6.0, -4.0, 0.0, 1.0, 3.0, 5.0, 10.0, -0.5])
    assert saturation_fraction(z, "sigmoid") == pytest.approx(3 / 8)
    assert saturation_fraction(z, "tanh") == pytest.approx(5 / 8)
    assert saturation_fraction(z, "relu") == pytest.approx(4 / 8)  # -6, -4, 0, -0.5 dead
    assert saturation_fraction(torch.zeros(2, 3), "sigmoid") == 0.0
    with pytest.raises(ValueError, match="gelu"):
        saturation_fraction(z, "gelu")


def test_relu_counts_zero_as_dead():
    assert saturation_fraction(torch.tensor([0.0, 1.0]), "relu") == 0.5


def test_gradient_norms_agree_between_hand_and_autograd_gradients():
    net, x, y = random_problem([5, 8, 3], "relu", batch=16, seed=0)
    hand = gradient_norms(backprop(net, x, y, "cross_entropy", "softmax"))
    cost_value(net(x), y, "cross_entropy", "softmax").backward()
    auto = gradient_norms(autograd_grads(net))
    assert list(hand) == ["layer1/W", "layer1/b", "layer2/W", "layer2/b"]
    for key in hand:
        assert hand[key] == pytest.approx(auto[key], rel=1e-12)
    w = net.layers[0].weight.grad
    assert hand["layer1/W"] == pytest.approx(float((w**2).sum().sqrt()), rel=1e-12)


def test_gradcheck_cli_prints_per_layer_errors_and_passes():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--layers", "4,6,5,3", "--activation", "tanh", "--cost", "cross_entropy"]
    args += ["--output-activation", "softmax", "--batch", "8"]
    proc = subprocess.run(
        [sys.executable, "-m", "mrinet.nets.gradcheck", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    layer_rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[0] for row in layer_rows] == ["1", "2", "3"]
    assert all(float(v) < 1e-6 for row in layer_rows for v in row[1:])
    assert "PASS" in lines[-1]


def test_gradcheck_main_fails_when_tolerance_cannot_be_met(capsys):
    assert gradcheck_main(["--layers", "3,4,2", "--tol-finite-diff", "0"]) == 1
    assert "FAIL" in capsys.readouterr().out
