"""The hand-derived backprop mode inside Lightning: exact gradient-descent steps, same objective
as the autograd Classifier, diagnostics in TensorBoard, and an end-to-end Hydra run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mrinet.callbacks.saturation import SaturationMonitor
from mrinet.data.contract import DataSpec
from mrinet.errors import ConfigError
from mrinet.models.backprop_classifier import BackpropClassifier
from mrinet.models.classifier import Classifier
from mrinet.nets.backprop import GradientDescent, backprop
from mrinet.nets.mlp import MLP


def _batch(n: int = 64, features: int = 5, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator) * 3 + 1
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def _model(loss="quadratic", output_activation="sigmoid", activation="sigmoid", lr=0.5, **kw):
    torch.manual_seed(0)
    net = MLP(5, [7, 4], 3, activation=activation)
    optimizer = kw.pop("optimizer", lambda params: GradientDescent(params, lr=lr))
    model = BackpropClassifier(net, optimizer, loss=loss, output_activation=output_activation, **kw)
    model.set_data_spec(DataSpec(classes=("a", "b", "c")))
    return model


def _trainer(tmp_path: Path, **kw) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**defaults, **kw})


def test_one_manual_training_step_moves_weights_by_exactly_minus_lr_times_grad(tmp_path):
    model = _model(lr=0.5)
    assert model.automatic_optimization is False
    x, y = _batch()
    before = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in model.net.layers]
    grads = backprop(model.net, x, torch.eye(3)[y], "quadratic", "sigmoid")
    loader = DataLoader(TensorDataset(x, y), batch_size=len(y))
    _trainer(tmp_path, max_steps=1).fit(model, loader)
    assert model.global_step == 1  # Lightning counted the manual optimizer step
    for (w0, b0), (gw, gb), lin in zip(before, grads, model.net.layers):
        assert torch.equal(lin.weight, w0 - 0.5 * gw)
        assert torch.equal(lin.bias, b0 - 0.5 * gb)
        assert not torch.equal(lin.weight, w0)


@pytest.mark.parametrize(
    ("loss", "output_activation", "activation"),
    [
        ("quadratic", "sigmoid", "sigmoid"),
        ("quadratic", "softmax", "tanh"),
        ("cross_entropy", "softmax", "relu"),
        ("cross_entropy", "sigmoid", "sigmoid"),  # output_activation only applies to quadratic
    ],
)
def test_hand_gradients_equal_autograd_of_the_classifier_cost(loss, output_activation, activation):
    model = _model(loss, output_activation, activation).double()
    x, y = _batch()
    x = x.double()
    model.input_mean = x.mean(0)
    model.input_std = x.std(0)
    model.class_weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    Classifier.cost(model, model(x), y).backward()  # the autograd Classifier's own objective
    hand = model.hand_gradients(x, y)
    for lin, (gw, gb) in zip(model.net.layers, hand):
        torch.testing.assert_close(gw, lin.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gb, lin.bias.grad, rtol=1e-10, atol=1e-12)


def _logged(csv_dir: Path) -> dict[str, list[float]]:
    """Step metrics as the CSV logger wrote them (column -> non-empty values)."""
    import pandas as pd

    (path,) = csv_dir.rglob("metrics.csv")
    frame = pd.read_csv(path)
    return {c: frame[c].dropna().tolist() for c in frame.columns}


def test_manual_training_logs_gradient_norms_and_saturation(tmp_path):
    model = _model(lr=2.0)
    x, y = _batch(256)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = _trainer(
        tmp_path, max_epochs=2, log_every_n_steps=1, callbacks=[SaturationMonitor()], logger=logger
    )
    trainer.fit(model, loader)
    assert trainer.global_step == 8
    logged = _logged(tmp_path / "csv")
    for name in ("net.layers.0.weight", "net.layers.0.bias", "net.layers.2.weight"):
        assert len(logged[f"grad_norm/{name}"]) == 8 and min(logged[f"grad_norm/{name}"]) > 0
    assert all(0.0 <= v <= 1.0 for v in logged["saturation/layer1"])
    assert len(logged["saturation/layer1"]) == len(logged["saturation/layer2"]) == 8


def test_saturation_monitor_reads_the_training_forward_pass(tmp_path):
    torch.manual_seed(0)
    net = MLP(5, [6], 3, activation="sigmoid")
    with torch.no_grad():
        net.layers[0].weight.fill_(0.0)
        net.layers[0].bias.copy_(torch.tensor([10.0, -10.0, 10.0, 0.0, 0.0, 0.0]))
    model = Classifier(net, lambda params: GradientDescent(params, lr=1e-12), loss="cross_entropy")
    model.set_data_spec(DataSpec(classes=("a", "b", "c")))
    x, y = _batch(32)
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = _trainer(
        tmp_path, max_steps=1, log_every_n_steps=1, callbacks=[SaturationMonitor()], logger=logger
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=32))
    assert _logged(tmp_path / "csv")["saturation/layer1"] == [pytest.approx(0.5)]
    assert not net.norms[0]._forward_hooks  # hooks removed after fit


def test_backprop_mode_refuses_what_the_equations_do_not_cover():
    optimizer = lambda params: GradientDescent(params, lr=0.1)  # noqa: E731
    with pytest.raises(ConfigError, match="plain lecture MLP"):
        BackpropClassifier(MLP(5, [4], 3, activation="sigmoid", dropout=0.1), optimizer)
    with pytest.raises(ConfigError, match="gelu"):
        BackpropClassifier(MLP(5, [4], 3, activation="gelu"), optimizer)
    with pytest.raises(ConfigError, match="scheduler"):
        BackpropClassifier(MLP(5, [4], 3), optimizer, scheduler=lambda optimizer: None)


TINY = [
    "data_size=tiny",  # configs/tiny/dti_tiny.yaml: the tiny cohort tests and debug=fast share
    "trainer.max_epochs=2",
    "data.batch_size=1024",  # few steps: this checks the plumbing, not the learning
    "trainer.log_every_n_steps=5",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
]


def _train(cli, tmp_path: Path, data_dir: Path, name: str, *overrides: str) -> dict:
    run_dir = tmp_path / name
    proc = cli(
        "mrinet.train",
        "experiment=dti_mlp_backprop",
        *TINY,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *overrides,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": run_dir, "metrics": json.loads((run_dir / "metrics.json").read_text())}


def _scalar_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in run_dir.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_dti_mlp_backprop_trains_end_to_end_through_hydra(cli, data_dir, tmp_path):
    hand = _train(cli, tmp_path, data_dir, "hand")
    assert hand["metrics"]["test"]["test/acc"] > 0.5  # three tissues: chance is about 1/3
    config = (hand["dir"] / ".hydra" / "config.yaml").read_text()
    assert "BackpropClassifier" in config and "GradientDescent" in config
    assert (hand["dir"] / "checkpoints" / "last.ckpt").is_file()
    tags = _scalar_tags(hand["dir"])
    assert {"saturation/layer1", "grad_norm/net.layers.0.weight", "val/acc", "test/acc"} <= tags


@pytest.mark.slow
def test_backprop_and_autograd_reach_the_same_accuracy_with_the_same_settings(
    cli, data_dir, tmp_path
):
    settings = ["trainer.max_epochs=5", "data.batch_size=128"]
    hand = _train(cli, tmp_path, data_dir, "hand", *settings)
    auto = _train(
        cli,
        tmp_path,
        data_dir,
        "auto",
        *settings,
        "model._target_=mrinet.models.classifier.Classifier",
    )
    hand_acc, auto_acc = hand["metrics"]["test"]["test/acc"], auto["metrics"]["test"]["test/acc"]
    assert hand_acc > 0.8
    assert abs(hand_acc - auto_acc) < 0.01  # same objective and steps: float32 rounding only
    assert "saturation/layer1" in _scalar_tags(auto["dir"])  # diagnostics in the autograd mode too


@pytest.mark.parametrize(
    ("loss", "output"), [("quadratic", "sigmoid"), ("cross_entropy", "softmax")]
)
def test_cost_comparison_sweeps_both_costs_with_hand_derived_backprop(loss, output):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["experiment=dti_cost_comparison", f"model.loss={loss}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.sweeper.params["model.loss"] == "quadratic,cross_entropy"
    assert cfg.hydra.sweep.subdir == loss  # one run folder per cost inside one sweep dir
    model = instantiate(cfg.model, _convert_="all")
    assert isinstance(model, BackpropClassifier)
    assert model.loss_name == loss and model.backprop_output_activation == output
