"""End to end through the real entry points: python -m mrinet.train / mrinet.eval."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from tests.helpers import eval_test_metrics, tensorboard_tags, train_run

TINY = [
    "experiment=dti_mlp",
    "data_size=tiny",  # configs/tiny/dti_tiny.yaml: the tiny cohort tests and debug=fast share
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=5",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, cli):
    """One tiny training run shared by the tests of this module."""
    work = tmp_path_factory.mktemp("e2e")
    run_dir = work / "run"
    proc = train_run(cli, *TINY, run_dir=run_dir, data_dir=data_dir, cwd=work)
    return {"dir": run_dir, "work": work, "proc": proc, "run_module": cli}


def test_run_dir_holds_config_checkpoints_and_metrics(run):
    d = run["dir"]
    assert (d / ".hydra" / "config.yaml").is_file() and (d / ".hydra" / "overrides.yaml").is_file()
    assert (d / "checkpoints" / "best.ckpt").is_file() and (
        d / "checkpoints" / "last.ckpt"
    ).is_file()
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["seed"] == 12345
    assert Path(metrics["ckpt_path"]) == d / "checkpoints" / "best.ckpt"
    for key in (
        "test/acc",
        "test/bal_acc",
        "test/loss",
        "test/f1_thalamus",
        "test/f1_corpus_callosum",
        "test/dice_thalamus",
        "test/dice_corpus_callosum",
        "test/dice_cortical_wm",
        "test/dice_macro",
    ):
        assert 0.0 <= metrics["test"][key] <= (1.0 if "loss" not in key else 10.0)
    assert metrics["test"]["test/acc"] > 0.5  # three classes: chance is ~0.33
    assert str(d) in run["proc"].stdout + run["proc"].stderr
    assert "tensorboard --logdir" in run["proc"].stdout + run["proc"].stderr


def test_tensorboard_has_scalars_figures_and_resolved_hparams(run):
    tags = tensorboard_tags(run["dir"])
    for tag in (
        "train/loss",
        "train/acc",
        "val/bal_acc",
        "val/loss",
        "test/acc",
        "test/f1_macro",
        "val/dice_macro",
        "val/dice_thalamus",
        "test/dice_macro",
        "val/wm_called_thalamus",
        "lr-Adam",
    ):
        assert tag in tags["scalars"], sorted(tags["scalars"])
    assert any(t.startswith("grad_norm/") for t in tags["scalars"])
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= tags["images"]
    hparams = tags["hparams"]
    assert hparams["model/optimizer/lr"] == pytest.approx(0.003)
    assert hparams["model/net/in_features"] == 5  # was ${mrinet_inputs:...}
    assert not [k for k, v in hparams.items() if "${" in str(v)]


def test_eval_reproduces_the_training_test_metrics(run):
    trained, evaluated = eval_test_metrics(
        run["run_module"], run["dir"], run["work"] / "eval", run["work"]
    )
    assert trained.keys() == evaluated.keys()
    for key, value in trained.items():
        assert abs(value - evaluated[key]) <= 1e-6, key


@pytest.mark.e2e  # a CLI exit 1: fast in tests/reliability/test_unwritable_dirs.py
def test_bad_data_dir_exits_nonzero_with_a_clear_message(run):
    proc = run["run_module"](
        "mrinet.train",
        "experiment=dti_mlp",
        "data.source=nifti",
        f"data.subjects_dir={run['work'] / 'no-such-dir'}",
        f"hydra.run.dir={run['work'] / 'bad'}",
        "extras.print_config=false",
        cwd=run["work"],
    )
    assert proc.returncode == 1
    assert "subjects directory not found" in proc.stderr and "no-such-dir" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.e2e  # Hydra's own --cfg, a further train subprocess
def test_cfg_job_prints_the_composed_config(run):
    proc = run["run_module"]("mrinet.train", "experiment=dti_mlp", "--cfg", "job", cwd=run["work"])
    assert (
        proc.returncode == 0
        and "hidden_dims" in proc.stdout
        and "task_name: dti_mlp" in proc.stdout
    )


def test_predict_writes_class_and_probability_maps_on_the_subject_grid(run, data_dir):
    import nibabel as nib
    import numpy as np

    subject = sorted((data_dir / "dti_synthetic").glob("*/sub-*"))[0]
    out = run["work"] / "pred" / "tissue.nii.gz"
    proc = run["run_module"](
        "mrinet.predict",
        f"ckpt_path={run['dir'] / 'checkpoints' / 'best.ckpt'}",
        f"input={subject}",
        f"output={out}",
        "mask=labels",
        f"hydra.run.dir={run['work'] / 'predict'}",
        cwd=run["work"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = nib.load(subject / "FA.nii.gz")
    classes, proba = nib.load(out), nib.load(out.with_name("tissue_proba.nii.gz"))
    assert classes.shape == reference.shape and proba.shape == (*reference.shape, 3)
    np.testing.assert_allclose(classes.affine, reference.affine)
    labels = np.asarray(classes.dataobj)
    codes = np.asarray(nib.load(subject / "aparc+aseg.nii.gz").dataobj)
    truth = np.select(
        [np.isin(codes, [10, 49]), np.isin(codes, range(251, 256)), np.isin(codes, [2, 41])],
        [1, 2, 3],
        0,
    )
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(labels > 0, truth > 0)  # mask=labels: exactly the class voxels
    assert (labels[truth > 0] == truth[truth > 0]).mean() > 0.6
    p = np.asarray(proba.dataobj)[truth > 0]
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.argmax(-1) + 1, labels[truth > 0])
    # labels at hand: predict reports the written map's Dice against them (hand count here)
    dice = json.loads(out.with_name("tissue_dice.json").read_text())
    for k, name in enumerate(["thalamus", "corpus_callosum", "cortical_wm"], start=1):
        both = 2 * ((labels == k) & (truth == k)).sum()
        assert dice[f"dice_{name}"] == pytest.approx(
            both / ((labels == k).sum() + (truth == k).sum())
        )
    assert dice["dice_macro"] == pytest.approx(
        np.mean([dice[f"dice_{n}"] for n in ("thalamus", "corpus_callosum", "cortical_wm")])
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def guarded_run(entry: str, overrides: list[str], capsys) -> str:
    """Run an entry point's task in-process as its CLI would (composed config, guarded)."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import guarded, register_resolvers

    register_resolvers()
    module = __import__(f"mrinet.{entry}", fromlist=["x"])
    task = module.train if entry == "train" else module.evaluate
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=entry, overrides=overrides)
    with pytest.raises(SystemExit) as exit_info:
        guarded(task)(cfg)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=-4", "data.batch_size must be a positive integer"),
        ("data.split=[0.5,0.2,0.2]", "must be three non-negative numbers summing to 1"),
        ("data.classes=[thalamus,putamen]", "class 'putamen' has no entry in the label map"),
        pytest.param(
            "trainer=gpu",
            "sees no GPU",
            marks=pytest.mark.skipif(_has_cuda(), reason="a GPU is present: trainer=gpu is valid"),
        ),
    ],
)
def test_bad_config_values_exit_with_the_key_and_fix(run, data_dir, override, message, capsys):
    out = run["work"] / "badcfg"
    paths = [f"paths.output_dir={out}", f"paths.root_dir={out}", f"paths.data_dir={data_dir}"]
    err = guarded_run("train", [*TINY, *paths, override], capsys)
    assert message in err and "fix:" in err


def test_eval_rejects_missing_and_corrupt_checkpoints(run, capsys):
    best = run["dir"] / "checkpoints" / "best.ckpt"
    corrupt = run["work"] / "corrupt.ckpt"
    corrupt.write_bytes(best.read_bytes()[:2000])
    out = run["work"] / "badeval"
    paths = [f"paths.output_dir={out}", f"paths.root_dir={out}", "extras.print_config=false"]
    for ckpt, message in (
        (run["work"] / "missing.ckpt", "checkpoint not found"),
        (corrupt, "cannot read checkpoint"),
    ):
        err = guarded_run("eval", [f"ckpt_path={ckpt}", *paths], capsys)
        assert message in err and str(ckpt) in err


@pytest.mark.e2e  # in-process in tests/reliability/test_checkpoints.py
def test_eval_names_a_data_mismatch_with_the_checkpoint(run):
    best = run["dir"] / "checkpoints" / "best.ckpt"
    proc = run["run_module"](
        "mrinet.eval",
        f"ckpt_path={best}",
        "data.features=[FA,MD]",
        f"hydra.run.dir={run['work'] / 'mm'}",
        cwd=run["work"],
    )
    assert proc.returncode == 1 and "trained with data.features" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_csv_logger_gets_hyperparameters_and_step_metrics(run, data_dir):
    """logger=many: the CSV logger receives the resolved hparams and the per-step scalars too."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers
    from mrinet.train import train

    register_resolvers()
    out = run["work"] / "csvrun"
    overrides = [
        *TINY,
        "logger=many",
        f"paths.output_dir={out}",
        f"paths.root_dir={out}",
        f"paths.data_dir={data_dir}",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    # step scalars are logged from detached tensors (torch warns on float() of a graph tensor)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    hparams = (out / "csv" / "hparams.yaml").read_text()
    assert "model/optimizer/lr: 0.003" in hparams and "${" not in hparams
    header = (out / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_step", "val/bal_acc", "test/acc"} <= set(header)
    assert any(h.startswith("grad_norm/") for h in header)
