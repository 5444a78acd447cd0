"""End to end: python -m mrinet.train experiment=recon_quality_cnn on tiny reconstruction files."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY_CNN as TINY
from tests.helpers import (
    eval_test_metrics,
    tensorboard_tags,
    write_ghosted_reconstructions,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, cli):
    work = tmp_path_factory.mktemp("e2e-recon")
    recon_dir = write_ghosted_reconstructions(work / "recon")
    run_dir = work / "run"
    proc = cli(
        "mrinet.train",
        *TINY,
        f"data.recon_dir={recon_dir}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": run_dir, "work": work}


def test_run_writes_metrics_with_auroc_and_checkpoints(run):
    d = run["dir"]
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["optimized_metric"] == "val/loss"
    assert metrics["optimized_value"] >= 0.0  # a cross-entropy
    for key in ("test/acc", "test/bal_acc", "test/auroc", "test/f1_accelerated", "test/loss"):
        assert key in metrics["test"], sorted(metrics["test"])
    assert 0.0 <= metrics["test"]["test/auroc"] <= 1.0
    assert (d / "checkpoints" / "best.ckpt").is_file()


def test_tensorboard_has_examples_roc_confusion_and_parameter_counts(run):
    tags = tensorboard_tags(run["dir"])
    expected = {"val/examples", "val/roc", "val/confusion_matrix", "test/examples", "test/roc"}
    assert expected <= tags["images"], sorted(tags["images"])
    for tag in ("val/auroc", "test/auroc", "val/bal_acc", "parameters/net_total"):
        assert tag in tags["scalars"], sorted(tags["scalars"])
    assert "parameters/dense_48x48_to_48x48" in tags["scalars"]
    assert tags["hparams"]["model/net/_target_"] == "mrinet.nets.cnn.ConvNet"


def test_validation_figures_every_n_epochs_scalars_every_epoch(run):
    """figures_every_n_epochs=2 over 3 epochs: figures at epochs 0 and 2 (the last), AUROC at all."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    counts: dict[str, int] = {}
    for events in run["dir"].rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in ("val/examples", "val/roc", "val/confusion_matrix", "test/examples"):
            if tag in acc.Tags()["images"]:
                counts[tag] = counts.get(tag, 0) + len(acc.Images(tag))
        if "val/auroc" in acc.Tags()["scalars"]:
            counts["val/auroc"] = counts.get("val/auroc", 0) + len(acc.Scalars("val/auroc"))
    assert counts == {
        "val/examples": 2,
        "val/roc": 2,
        "val/confusion_matrix": 2,
        "test/examples": 1,
        "val/auroc": 3,
    }, counts


@pytest.mark.e2e  # eval's reproduction: fast in test_train_dti.py
def test_eval_reproduces_the_test_metrics(run, cli):
    work = run["work"]
    trained, evaluated = eval_test_metrics(
        cli, run["dir"], work / "eval", work, "extras.num_threads=1"
    )
    assert trained.keys() == evaluated.keys()
    for key, value in trained.items():
        assert abs(value - evaluated[key]) <= 1e-6, key
