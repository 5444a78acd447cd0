"""Checkpoints: safe to load (weights_only), and a wrong/missing/corrupt one is named clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import (
    LABEL_MAP,
    QUIET,
    RECON,
    assert_clear,
    compose,
    guarded_run,
    write_recon_dir,
)


def train_in_process(overrides: list[str], out: Path) -> Path:
    from mrinet.train import train

    paths = [f"paths.output_dir={out}", f"paths.root_dir={out}", f"paths.data_dir={out}/data"]
    train(compose("train", [*overrides, *paths, "trainer.max_epochs=1", *QUIET]))
    return out / "checkpoints"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dti_run):
    """A tiny DTI run on NIfTI subjects (the session's, its subjects copied into this module's
    work dir) and a tiny recon-quality CNN run: their checkpoints."""
    work = tmp_path_factory.mktemp("ckpt")
    shutil.copytree(tiny_dti_run["subjects"], work / "subjects")
    dti = tiny_dti_run["run"] / "checkpoints"
    recon_dir = write_recon_dir(work / "recon")
    recon = train_in_process([*RECON, f"data.recon_dir={recon_dir}"], work / "recon_run")
    return {
        "work": work,
        "dti": dti / "best.ckpt",
        "recon": recon / "best.ckpt",
        "recon_dir": recon_dir,
    }


class Payload:
    """Unpickling this runs a shell command that creates `marker` (what weights_only stops)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def plain_types_only(value, where: str = "checkpoint") -> None:
    """Every leaf is a tensor or a plain Python type (what weights_only=True may load)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            assert isinstance(key, (str, int)), where
            plain_types_only(sub, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            plain_types_only(sub, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (torch.Tensor, str, int, float, bool)), (
            where,
            type(value),
        )


@pytest.mark.parametrize("kind", ["dti", "recon"])
def test_checkpoints_load_with_weights_only_and_hold_scaler_and_classes(trained, kind):
    for path in trained[kind].parent.glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        plain_types_only(checkpoint)
        assert {"state_dict", "mrinet", "optimizer_states"} <= set(checkpoint)
        info = checkpoint["mrinet"]
        assert info["data"]["classes"] and info["model"]["_target_"].startswith("mrinet.")
    if kind == "dti":
        state = checkpoint["state_dict"]
        mean, std = state["input_mean"], state["input_std"]
        assert mean.shape == std.shape == (5,) and torch.all(std > 0)
        assert 800 < float(mean[0]) < 1000  # T1w: the raw training-split mean is stored
        assert info["data"]["classes"] == ["thalamus", "corpus_callosum", "cortical_wm"]
        assert info["data"]["label_map"] == LABEL_MAP


def test_lightning_resume_and_test_paths_load_weights_only(trained, monkeypatch):
    """fit(ckpt_path=...) and test(ckpt_path=...) go through torch.load with weights_only=True
    (a spy records the flag; the load itself is the real one)."""
    import mrinet.train

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    work = trained["work"]
    out = work / "resume"
    cfg = compose(
        "train",
        [
            "experiment=dti_mlp",
            "data.source=nifti",
            f"data.subjects_dir={work / 'subjects'}",
            "data.split=[0.5,0.25,0.25]",
            f"ckpt_path={trained['dti'].parent / 'last.ckpt'}",
            "trainer.max_epochs=2",
            f"paths.output_dir={out}",
            f"paths.root_dir={out}",
            *QUIET,
        ],
    )
    mrinet.train.train(cfg)
    # Lightning passes weights_only=None, which this torch resolves to True: check both
    assert len(calls) >= 2 and all(flag in (True, None) for flag in calls), calls
    evil = work / "evil-lightning.ckpt"
    torch.save({"x": Payload(work / "ran")}, evil)
    with pytest.raises(Exception, match="Weights only load failed"):
        real_load(evil, weights_only=None)
    assert not (work / "ran").exists()


def predict_overrides(ckpt, subject, out) -> list[str]:
    return [f"ckpt_path={ckpt}", f"input={subject}", f"output={out / 'p.nii.gz'}", *paths(out)]


def paths(out: Path) -> list[str]:
    return [f"paths.output_dir={out}", f"paths.root_dir={out}"]


def test_predict_with_a_recon_checkpoint_names_the_mismatch(trained, capsys):
    subject = trained["work"] / "subjects" / "sub-0"
    out = trained["work"] / "p1"
    err = guarded_run("predict", predict_overrides(trained["recon"], subject, out), capsys)
    assert_clear(err, "not trained on DTI voxels", trained["recon"], "experiment=dti_mlp")
    assert not (out / "p.nii.gz").exists()


@pytest.mark.parametrize("case", ["missing", "corrupt", "not_lightning"])
def test_predict_with_missing_or_corrupt_checkpoint(trained, capsys, case):
    work = trained["work"]
    path = work / f"{case}.ckpt"
    if case == "corrupt":
        path.write_bytes(trained["dti"].read_bytes()[:5000])
    elif case == "not_lightning":
        torch.save({"weights": torch.zeros(3)}, path)
    message = {
        "missing": "checkpoint not found",
        "corrupt": "cannot read checkpoint",
        "not_lightning": "not a Lightning checkpoint",
    }[case]
    err = guarded_run(
        "predict", predict_overrides(path, work / "subjects" / "sub-0", work / case), capsys
    )
    assert_clear(err, message, path)


def test_pickled_code_in_a_checkpoint_is_refused(trained, capsys, tmp_path):
    """A checkpoint that would run code when unpickled is rejected, and the code does not run."""
    marker = tmp_path / "ran"
    checkpoint = torch.load(trained["dti"], map_location="cpu", weights_only=True)
    checkpoint["evil"] = Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(checkpoint, path)
    err = guarded_run("eval", [f"ckpt_path={path}", *paths(tmp_path / "e")], capsys)
    assert_clear(err, "cannot read checkpoint", path)
    assert not marker.exists()


def test_checkpoint_with_weights_of_another_model(trained, capsys, tmp_path):
    checkpoint = torch.load(trained["dti"], map_location="cpu", weights_only=True)
    checkpoint["mrinet"]["model"]["net"]["hidden_dims"] = [32]
    path = tmp_path / "other.ckpt"
    torch.save(checkpoint, path)
    subject = trained["work"] / "subjects" / "sub-0"
    err = guarded_run("predict", predict_overrides(path, subject, tmp_path), capsys)
    assert_clear(err, "weights do not fit the model", "another model/experiment", path)


@pytest.mark.slow  # a real `python -m mrinet.eval` subprocess (exit code 1)
def test_eval_of_a_dti_checkpoint_on_recon_data_names_the_mismatch(trained, cli, tmp_path):
    proc = cli(
        "mrinet.eval",
        f"ckpt_path={trained['dti']}",
        "data=recon_quality",
        f"data.recon_dir={trained['recon_dir']}",
        f"hydra.run.dir={tmp_path / 'e'}",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_clear(proc.stderr, "trained on mrinet.data.dti.DTIDataModule", trained["dti"])


def test_eval_override_of_a_setting_the_data_does_not_have(trained):
    from mrinet.errors import CheckpointError
    from mrinet.eval import check_data_overrides

    info = torch.load(trained["dti"], weights_only=True)["mrinet"]
    with pytest.raises(
        CheckpointError, match=r"data\.recon_dir is not a setting of mrinet\.data\.dti"
    ):
        check_data_overrides(info["data"], {"recon_dir": "x"}, None, trained["dti"])
    check_data_overrides(info["data"], {"subjects_dir": "x"}, info["data"]["_target_"], "c")


def test_resuming_from_another_experiments_checkpoint_names_the_mismatch(trained):
    from hydra.utils import instantiate

    from mrinet.errors import CheckpointError
    from mrinet.run.checkpoints import check_fits_model, load_checkpoint

    dti = load_checkpoint(trained["dti"])
    model = instantiate(dti["mrinet"]["model"])
    check_fits_model(dti, model, trained["dti"])  # its own model fits
    with pytest.raises(CheckpointError) as err:
        check_fits_model(load_checkpoint(trained["recon"]), model, trained["recon"])
    text = str(err.value)
    assert "recon_quality_cnn" in text and "does not fit this model" in text
    assert str(trained["recon"]) in text and "fix:" in text
