"""Auto-context end to end: a first stage (dti_mlp_context), a second on its probabilities
(dti_mlp_autocontext), and a second-stage checkpoint that needs no other file."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from tests.helpers import TINY_CONTEXT_RUN, eval_test_metrics, train_run

TINY = TINY_CONTEXT_RUN


@pytest.fixture(scope="module")
def stages(context_stage1, data_dir, cli):
    """Stage 1 in the work dir's own logs/ (where dti_mlp_autocontext looks for it; the
    session's context run), then stage 2 with no data.context_model given."""
    work = context_stage1["work"]
    stage1 = next((work / "logs" / "dti_mlp_context" / "runs").glob("*/checkpoints/best.ckpt"))
    run_dir = work / "stage2"
    train_run(
        cli, "experiment=dti_mlp_autocontext", *TINY, run_dir=run_dir, data_dir=data_dir, cwd=work
    )
    cohort = next((data_dir / "dti_synthetic").glob("literature-4subj-*"))
    subjects = sorted(p for p in cohort.iterdir() if p.is_dir())
    return {"work": work, "stage1": stage1, "dir": run_dir, "cli": cli, "subjects": subjects}


def _predict(stages, ckpt, subject, out, *extra):
    return stages["cli"](
        "mrinet.predict",
        f"ckpt_path={ckpt}",
        f"input={subject}",
        f"output={out}",
        *extra,
        f"hydra.run.dir={stages['work'] / 'predict'}",
        cwd=stages["work"],
    )


def test_second_stage_records_its_first_stage_and_sizes_its_inputs(stages):
    import torch

    ckpt = torch.load(stages["dir"] / "checkpoints" / "best.ckpt", weights_only=True)
    data = ckpt["mrinet"]["data"]
    assert data["context"] == ["coords", "patch", "autocontext"]
    assert data["context_model"] == str(stages["stage1"])  # the newest stage-1 run, resolved
    first = torch.load(stages["stage1"], weights_only=True)
    carried = ckpt["mrinet"]["context_model"]
    assert carried["mrinet"]["task_name"] == "dti_mlp_context"
    for name, value in first["state_dict"].items():
        assert torch.equal(carried["state_dict"][name], value), name
    # stage 1's 5 + 3 + 2 * 5 * 26 columns, then 3 log-probabilities, each with 2 * 26 neighbours
    assert ckpt["mrinet"]["model"]["net"]["in_features"] == 5 + 3 + 2 * 5 * 26 + 3 * (1 + 2 * 26)


def test_columns_are_the_first_stage_probability_maps_predict_writes(stages, tmp_path):
    """The columns the second stage trains on are stage 1's probabilities as predict writes
    them (mask=brain), as log(max(p, 1e-4)) + log(1e4), at the voxel and its R neighbour."""
    import torch

    from mrinet.data.tissue.geometry import world_axes
    from mrinet.io.nifti import load_nifti
    from mrinet.run.checkpoints import checkpoint_datamodule

    subject = stages["subjects"][0]
    out = tmp_path / "stage1.nii.gz"
    proc = _predict(stages, stages["stage1"], subject, out, "mask=brain")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proba, affine = load_nifti(tmp_path / "stage1_proba.nii.gz")[:2]
    expected = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-4, 1.0)) + math.log(1e4)
    expected[np.asarray(proba).sum(-1) == 0] = 0.0  # outside the brain mask

    checkpoint = torch.load(stages["dir"] / "checkpoints" / "best.ckpt", weights_only=True)
    datamodule = checkpoint_datamodule(checkpoint)
    x, _, volume = datamodule.read_subject(subject, datamodule.context)
    names = datamodule.feature_names
    where = np.argwhere(volume["classes"] >= 0)  # class voxels, C order as the columns
    order, flips = world_axes(volume["affine"])
    step = np.zeros(3, dtype=int)
    step[order[0]] = -1 if flips[0] else 1  # one voxel towards R in array indices
    for k, name in enumerate(datamodule.classes):
        centre = x[:, names.index(f"logp_{name}")]
        np.testing.assert_allclose(centre, expected[(*where.T, k)], atol=2e-4)
        right = where + step
        inside = np.all((right >= 0) & (right < np.asarray(proba.shape[:3])), axis=1)
        neighbour = x[inside, names.index(f"logp_{name}[+1,+0,+0]")]
        np.testing.assert_allclose(neighbour, expected[(*right[inside].T, k)], atol=2e-4)
    assert np.allclose(affine, volume["affine"])


@pytest.mark.e2e  # eval + predict subprocesses (predict's columns above are fast)
def test_second_stage_evaluates_and_predicts_without_the_first_stage_file(stages, tmp_path):
    moved = tmp_path / "elsewhere.ckpt"
    shutil.move(stages["stage1"], moved)
    try:
        trained, evaluated = eval_test_metrics(
            stages["cli"], stages["dir"], tmp_path / "eval", stages["work"]
        )
        assert evaluated["test/dice_macro"] == pytest.approx(trained["test/dice_macro"], abs=1e-6)
        subject = stages["subjects"][0]
        out = tmp_path / "pred.nii.gz"
        proc = _predict(stages, stages["dir"] / "checkpoints" / "best.ckpt", subject, out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        dice = json.loads(out.with_name("pred_dice.json").read_text())
        assert 0.0 <= dice["dice_macro"] <= 1.0
    finally:
        shutil.move(moved, stages["stage1"])


def test_autocontext_without_a_first_stage_run_says_how_to_train_one(cli, data_dir, tmp_path):
    proc = cli(
        "mrinet.train",
        "experiment=dti_mlp_autocontext",
        *TINY,
        f"paths.data_dir={data_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "no best.ckpt found for task 'dti_mlp_context'" in proc.stderr
    assert "python -m mrinet.train experiment=dti_mlp_context" in proc.stderr


def test_first_stage_with_other_classes_is_refused_naming_the_key(stages):
    from mrinet.data.tissue.voxel_module import DTIDataModule
    from mrinet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.classes") as err:
        DTIDataModule(
            context=["autocontext"],
            context_model=str(stages["stage1"]),
            classes=["thalamus", "cortical_wm"],
            label_map={"thalamus": [10, 49], "cortical_wm": [2, 41]},
        )
    assert "same classes" in err.value.fix


def test_one_voxel_cache_per_settings_holds_the_newest_first_stage(stages):
    """Retraining the first stage replaces the cached columns instead of adding a file."""
    import torch
    from hydra.utils import instantiate

    checkpoint = torch.load(stages["dir"] / "checkpoints" / "best.ckpt", weights_only=True)
    first = dict(checkpoint["mrinet"]["context_model"])
    data_cfg = checkpoint["mrinet"]["data"]
    before = instantiate(data_cfg, _convert_="all", _partial_=True)(context_model=first)
    x_before = before.load_voxels().features
    cohort = before.subjects_root()

    def autocontext_caches():
        found = {}
        for path in cohort.glob(".voxels-*.npz"):
            with np.load(path) as saved:
                if "model_key" in saved.files:
                    found[path] = str(saved["model_key"])
        return found

    assert list(autocontext_caches().values()) == [before.context.model.key]
    state = {k: v.clone() for k, v in first["state_dict"].items()}
    weight = next(k for k in state if k.endswith("weight") and state[k].ndim == 2)
    state[weight] = state[weight] * 1.5  # another first stage: other probabilities
    after = instantiate(data_cfg, _convert_="all", _partial_=True)(
        context_model={**first, "state_dict": state}
    )
    x_after = after.load_voxels().features
    assert after.context.model.key != before.context.model.key
    assert list(autocontext_caches().values()) == [after.context.model.key]
    stage = [i for i, name in enumerate(after.feature_names) if name.startswith("logp_")]
    own = [i for i, name in enumerate(after.feature_names) if not name.startswith("logp_")]
    np.testing.assert_array_equal(x_after[:, own], x_before[:, own])
    assert not np.allclose(x_after[:, stage], x_before[:, stage])
