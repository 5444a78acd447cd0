"""The DTI segmentation CNN end to end: train, eval and predict agree on the same voxels."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import eval_test_metrics, tensorboard_tags, train_run

TINY_UNET = [
    "experiment=dti_unet",
    "data_size=tiny",  # configs/tiny/dti_volumes_tiny.yaml: 16^3 crops of the tiny cohort
    "trainer.max_epochs=3",
    "model.net.width=4",
    "callbacks.tissue_maps.every_n_epochs=1",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
]


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory, data_dir, cli):
    work = tmp_path_factory.mktemp("unet")
    run_dir = work / "run"
    train_run(cli, *TINY_UNET, run_dir=run_dir, data_dir=data_dir, cwd=work)
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    cohort = next((data_dir / "dti_synthetic").glob("literature-4subj-*"))
    return {"dir": run_dir, "work": work, "cli": cli, "cohort": cohort, "cfg": cfg}


def test_the_run_logs_dice_and_the_tissue_map(unet_run):
    metrics = json.loads((unet_run["dir"] / "metrics.json").read_text())["test"]
    for key in ("test/dice_thalamus", "test/dice_corpus_callosum", "test/dice_cortical_wm"):
        assert 0.0 <= metrics[key] <= 1.0
    tags = tensorboard_tags(unet_run["dir"])
    assert {"val/dice_macro", "val/wm_called_thalamus"} <= tags["scalars"]
    assert "val/tissue_maps" in tags["images"]


def test_predict_on_the_test_subject_reproduces_the_test_dice(unet_run):
    """predict feeds the whole volume through the net and applies the checkpoint's tuned
    offsets: on the test subject's labelled voxels its map has the run's test Dice."""

    ckpt = unet_run["dir"] / "checkpoints" / "best.ckpt"
    from mrinet.data.splits import split_units

    names = sorted(p.name for p in unet_run["cohort"].iterdir() if p.is_dir())
    data = unet_run["cfg"]["data"]
    seed = unet_run["cfg"]["seed"] if data["seed"] == "${seed}" else data["seed"]
    test = split_units(names, data["split"], seed)["test"]
    assert len(test) == 1
    out = unet_run["work"] / "pred" / f"{test[0]}.nii.gz"
    proc = unet_run["cli"](
        "mrinet.predict",
        f"ckpt_path={ckpt}",
        f"input={unet_run['cohort'] / test[0]}",
        f"output={out}",
        "mask=labels",
        f"hydra.run.dir={unet_run['work'] / 'predict'}",
        cwd=unet_run["work"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dice = json.loads(out.with_name(f"{test[0]}_dice.json").read_text())
    trained = json.loads((unet_run["dir"] / "metrics.json").read_text())["test"]
    for name in ("thalamus", "corpus_callosum", "cortical_wm"):
        assert dice[f"dice_{name}"] == pytest.approx(trained[f"test/dice_{name}"], abs=1e-6)


@pytest.mark.e2e  # eval's reproduction: fast in test_train_dti.py
def test_eval_reproduces_the_training_test_metrics(unet_run):
    work = unet_run["work"]
    trained, evaluated = eval_test_metrics(unet_run["cli"], unet_run["dir"], work / "eval", work)
    for key, value in trained.items():
        assert abs(value - evaluated[key]) <= 1e-5, key


@pytest.mark.e2e  # a second DDP run (tests/e2e/test_ddp.py is the fast suite's)
def test_ddp_with_more_ranks_than_subjects_gives_the_single_process_metrics(
    tmp_path, data_dir, cli
):
    """The tiny cohort has one validation and one test subject for two gloo ranks: the rank
    without a subject runs an unlabelled filler volume (Lightning needs a batch on every rank)
    that counts nowhere, so the run finishes and its test Dice is single-process eval's."""
    run_dir = tmp_path / "ddp"
    overrides = (*TINY_UNET, "trainer=ddp_cpu", "trainer.max_epochs=1")
    train_run(cli, *overrides, run_dir=run_dir, data_dir=data_dir, cwd=tmp_path, timeout=600)
    trained, evaluated = eval_test_metrics(cli, run_dir, tmp_path / "eval", tmp_path)
    for key in ("test/dice_thalamus", "test/dice_corpus_callosum", "test/dice_cortical_wm"):
        assert abs(trained[key] - evaluated[key]) <= 1e-5, key
