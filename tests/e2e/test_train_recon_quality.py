"""End to end: python -m mrinet.train experiment=recon_quality_cnn on tiny reconstruction files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mrinet.io.fastmri import write_reconstruction
from tests.conftest import eval_test_metrics

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("e2e_dti", HERE / "test_train_dti.py")
tensorboard_tags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tensorboard_tags)
tensorboard_tags = tensorboard_tags.tensorboard_tags

TINY = [
    "experiment=recon_quality_cnn",
    "data.source=files",
    "data.crop=[48,48]",
    "data.split=[0.5,0.25,0.25]",
    "model.net.channels=[8,16]",
    "model.num_examples=4",
    "trainer.max_epochs=3",
    "model.figures_every_n_epochs=2",
    "trainer.log_every_n_steps=2",
    "extras.print_config=false",
    "extras.num_threads=1",
    "callbacks.progress_bar.kind=none",
]


def write_ghosted_reconstructions(root: Path, volumes: int = 6, slices: int = 4) -> Path:
    """Ellipses as the reference; the same plus a shifted ghost (aliasing-like) as `pics_R4`."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:56j, -1:1:56j]
    for v in range(volumes):
        axes = rng.uniform(0.5, 0.8, (slices, 2, 1, 1))
        reference = ((xx / axes[:, 0]) ** 2 + (yy / axes[:, 1]) ** 2 < 1).astype(np.float32)
        accelerated = reference + 0.3 * np.roll(reference, 14, axis=-1)
        for tag, images in (("reference_matched_R4", reference), ("pics_R4", accelerated)):
            attrs = {"acceleration": 4 if tag == "pics_R4" else 1, "method": "pics"}
            write_reconstruction(root / tag / f"vol{v}.h5", images, np.ones(56), attrs)
    return root


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


def test_eval_reproduces_the_test_metrics(run, cli):
    work = run["work"]
    trained, evaluated = eval_test_metrics(
        cli, run["dir"], work / "eval", work, "extras.num_threads=1"
    )
    assert trained.keys() == evaluated.keys()
    for key, value in trained.items():
        assert abs(value - evaluated[key]) <= 1e-6, key
