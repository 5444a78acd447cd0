"""A pruned sweep's optimized_metric is checked against what the model logs in validation
before any trial runs: each mrinet model's declaration equals what a real validation run logs,
and the real entry point (Hydra multirun, mrinet's Optuna sweeper) refuses a metric it never
logs, or warns when a model declares nothing."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

optuna = pytest.importorskip("optuna")

from mrinet.data.contract import DataSpec  # noqa: E402
from mrinet.models.backprop_classifier import BackpropClassifier  # noqa: E402
from mrinet.models.classifier import Classifier  # noqa: E402
from mrinet.models.image_classifier import ImageClassifier  # noqa: E402
from mrinet.nets.cnn import ConvNet  # noqa: E402
from mrinet.nets.mlp import MLP  # noqa: E402
from mrinet.run.validation_metrics import declared_metrics, logged  # noqa: E402

CLASSIFIER = "mrinet.models.classifier.Classifier"
BACKPROP = "mrinet.models.backprop_classifier.BackpropClassifier"
VOXEL_CLASSES = ("thalamus", "corpus_callosum", "cortical_wm")
IMAGE_CLASSES = ("reference", "accelerated")


def validated(model: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> set[str]:
    """The names one real validation epoch logs."""
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(model, DataLoader(TensorDataset(x, y), batch_size=16), verbose=False)
    return {k for k in trainer.callback_metrics if k.startswith("val")}


def voxel_spec() -> DataSpec:
    return DataSpec(
        classes=VOXEL_CLASSES, input_mean=(0.0,) * 5, input_std=(1.0,) * 5, input_shape=(5,)
    )


def voxel_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(64, 5), torch.arange(64) % 3


def classifier() -> Classifier:
    net = MLP(in_features=5, hidden_dims=[8], num_classes=3)
    return Classifier(net, functools.partial(torch.optim.Adam, lr=1e-3))


def backprop_classifier() -> BackpropClassifier:
    net = MLP(in_features=5, hidden_dims=[8], num_classes=3, activation="sigmoid")
    return BackpropClassifier(net, functools.partial(torch.optim.SGD, lr=0.1))


@pytest.mark.parametrize("make", [classifier, backprop_classifier], ids=["classifier", "backprop"])
@pytest.mark.parametrize("decision", ["argmax", "tuned"])
def test_voxel_models_declare_exactly_what_validation_logs(make, decision):
    model = make()
    if decision == "tuned":  # the tuned rule re-scores the epoch: same names
        model = type(model)(
            model.net, model.optimizer_factory, decision="tuned", loss=model.loss_name
        )
    model.set_data_spec(voxel_spec())
    declared = type(model).validation_metrics(VOXEL_CLASSES)
    assert len(declared) == len(set(declared))
    assert validated(model, *voxel_batch()) == set(declared)


def test_the_image_classifier_declares_exactly_what_validation_logs():
    net = ConvNet(in_channels=1, num_classes=2, channels=(4, 4), norm="none")
    model = ImageClassifier(net, functools.partial(torch.optim.Adam, lr=1e-3), image_size=(16, 16))
    model.set_data_spec(DataSpec(classes=IMAGE_CLASSES, input_shape=(1, 16, 16)))
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 16, 16), torch.arange(32) % 2  # both classes: auroc is logged
    declared = ImageClassifier.validation_metrics(IMAGE_CLASSES)
    assert "val/auroc" in declared
    assert validated(model, x, y) == set(declared)
    assert "val/auroc" not in ImageClassifier.validation_metrics(VOXEL_CLASSES)


def test_unknown_classes_give_per_class_patterns():
    from omegaconf import OmegaConf

    names = declared_metrics(Classifier, OmegaConf.create({"model": {"class_names": None}}))
    assert "val/dice_*" in names and "val/dice_macro" in names
    assert logged("val/dice_thalamus", names) and logged("val/loss", names)
    assert not logged("val/dice", names) and not logged("train/loss", names)
    assert declared_metrics(torch.nn.Identity, OmegaConf.create({})) is None


# ---- the real entry point: Hydra multirun with mrinet's Optuna sweeper --------------------
SEARCH = [
    "-m",
    "experiment=dti_mlp",
    "hparams_search=dti_mlp_optuna",
    "data_size=tiny",
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.n_jobs=1",
    "extras.print_config=false",
]


def search(cli, work: Path, *overrides: str) -> str:
    """Run the search with `overrides` through `python -m mrinet.train -m`; exit 1 expected,
    without a traceback; its output."""
    proc = cli(
        "mrinet.train",
        *SEARCH,
        *overrides,
        f"paths.log_dir={work / 'logs'}",
        f"paths.data_dir={work / 'data'}",
        cwd=work,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    return out


def nothing_ran(work: Path, journal: Path) -> None:
    assert not list(work.glob("logs/**/.hydra")), "a trial ran"
    if journal.exists():
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(journal)))
        with pytest.raises(KeyError):
            optuna.load_study(study_name="dti_mlp", storage=storage)
    assert not (work / "data").exists(), "the data was built"


@pytest.mark.parametrize(
    "metric, mode, model",
    [
        ("val/dice_gray_matter", "max", []),  # a class the DTI data does not have
        ("val/auroc", "max", []),  # the image classifier's, not the voxel MLP's
        ("val/mse", "min", [f"model._target_=choice({CLASSIFIER},{BACKPROP})"]),  # each model
    ],
)
def test_a_metric_the_model_never_logs_in_validation_is_refused(tmp_path, cli, metric, mode, model):
    journal = tmp_path / "study.journal"
    storage = f"hydra.sweeper.storage=journal:{journal}"
    out = search(
        cli, tmp_path, f"optimized_metric={metric}", f"optimized_mode={mode}", *model, storage
    )
    assert f"{metric!r} is never logged in validation" in out, out[-3000:]
    assert "where: optimized_metric" in out and "optimized_metric=val/dice_macro" in out
    assert "hydra.sweeper.pruner=none" in out
    if metric == "val/dice_gray_matter":
        assert "val/dice_thalamus" in out  # it lists what the model logs, per class
    if model:
        assert f"the trials' model (model._target_={CLASSIFIER})" in out  # the first one
    nothing_ran(tmp_path, journal)


def test_a_model_without_a_declaration_is_warned_about_not_refused(tmp_path, cli):
    # torch.nn.Identity declares nothing: a warning, and the sweep goes on to its next check
    # (a journal folder that does not exist), so nothing runs
    journal = tmp_path / "no" / "study.journal"
    out = search(
        cli,
        tmp_path,
        "model._target_=torch.nn.Identity",
        f"hydra.sweeper.storage=journal:{journal}",
    )
    assert "torch.nn.Identity) declares no validation_metrics" in out, out[-3000:]
    assert "'val/dice_macro' was not checked" in out
    assert "where: hydra.sweeper.storage" in out  # the next check's error, not the metric's
    assert not list(tmp_path.glob("logs/**/.hydra"))


def test_the_check_logs_nothing_for_a_declared_model(caplog):
    from omegaconf import OmegaConf

    from mrinet.run.validation_metrics import check_pruned_metric

    cfg = OmegaConf.create(
        {
            "optimized_metric": "val/dice_thalamus",
            "model": {"_target_": "mrinet.models.classifier.Classifier", "class_names": None},
            "data": {"classes": list(VOXEL_CLASSES)},
        }
    )
    with caplog.at_level(logging.WARNING, logger="mrinet.sweep"):
        check_pruned_metric(cfg, "median")
    assert caplog.records == []
