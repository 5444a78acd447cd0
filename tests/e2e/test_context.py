"""Spatial context end to end: train with coords + patches, predict builds the same inputs."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def context_run(context_stage1, tmp_path_factory, data_dir, cli):
    """The session's tiny context MLP (dti_mlp_context with TINY_CONTEXT_RUN), shared with the
    auto-context tests; predictions go to this module's own work dir."""
    work = tmp_path_factory.mktemp("context")
    return {"dir": context_stage1["dir"], "work": work, "cli": cli, "data_dir": data_dir}


def _predict(run, subject, *extra):
    out = run["work"] / "pred" / f"{subject.name}.nii.gz"
    proc = run["cli"](
        "mrinet.predict",
        f"ckpt_path={run['dir'] / 'checkpoints' / 'best.ckpt'}",
        f"input={subject}",
        f"output={out}",
        *extra,
        f"hydra.run.dir={run['work'] / 'predict'}",
        cwd=run["work"],
    )
    return proc, out


def test_checkpoint_records_the_context_and_the_tuned_offsets(context_run):
    import torch

    ckpt = torch.load(context_run["dir"] / "checkpoints" / "best.ckpt", weights_only=True)
    data = ckpt["mrinet"]["data"]
    assert data["context"] == ["coords", "patch"] and data["patch_size"] == 3
    assert data["patch_dilation"] == [1, 2]  # predict rebuilds both patches from it
    assert ckpt["mrinet"]["model"]["net"]["in_features"] == 5 + 3 + 2 * 5 * 26
    assert ckpt["state_dict"]["logit_offset"].shape == (3,)
    metrics = json.loads((context_run["dir"] / "metrics.json").read_text())["test"]
    assert 0.0 <= metrics["test/dice_macro"] <= 1.0


def test_predict_rebuilds_the_context_and_reports_dice(context_run):
    """predict builds coords + patches from the checkpoint's data settings (the model would
    refuse another input size) and, labels at hand, writes the map's Dice."""
    import yaml

    cfg = yaml.safe_load((context_run["dir"] / ".hydra" / "config.yaml").read_text())
    assert cfg["data"]["context"] == ["coords", "patch"]
    cohort = next((context_run["data_dir"] / "dti_synthetic").glob("literature-4subj-*"))
    subject = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    proc, out = _predict(context_run, subject, "mask=labels")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dice = json.loads(out.with_name(f"{subject.name}_dice.json").read_text())
    assert 0.3 < dice["dice_cortical_wm"] <= 1.0


@pytest.mark.e2e  # a further predict subprocess (the rebuild above is the fast one)
def test_predict_with_another_context_says_the_checkpoint_has_one(context_run):
    cohort = next((context_run["data_dir"] / "dti_synthetic").glob("literature-4subj-*"))
    subject = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    proc, _ = _predict(context_run, subject, "context=none")
    assert proc.returncode == 1
    assert "trained with spatial context data.context=['coords', 'patch']" in proc.stderr
    assert "drop the context= override" in proc.stderr


@pytest.mark.e2e  # a further predict subprocess (the rebuild above is the fast one)
def test_predict_on_a_subject_without_brain_mask_names_the_file(context_run, tmp_path):
    cohort = next((context_run["data_dir"] / "dti_synthetic").glob("literature-4subj-*"))
    subject = tmp_path / "sub-nomask"
    shutil.copytree(sorted(p for p in cohort.iterdir() if p.is_dir())[0], subject)
    (subject / "nodif_brain_mask.nii.gz").unlink()
    proc, _ = _predict(context_run, subject)
    assert proc.returncode == 1
    assert "needs a brain mask" in proc.stderr and "nodif_brain_mask.nii.gz" in proc.stderr
