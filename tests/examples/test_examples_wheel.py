"""The two examples in examples/, copied out of the checkout and installed beside mrinet's
wheel (pip --target: the shared environment is never touched), run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
QUIET = ["extras.print_config=false", "extras.num_threads=1", "callbacks.progress_bar.kind=none"]
# after the checkpoint allowlist: a user's modules are trusted by name to be rebuilt from a
# checkpoint (`++` sets the key whether or not this mrinet version has it)
TRUST = "++trusted_modules=[{}]"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """mrinet's wheel and both examples installed into their own --target folders."""
    tmp = tmp_path_factory.mktemp("examples")
    wheels, site = tmp / "wheels", tmp / "site"
    subprocess.run(
        [*PIP, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
    )
    (wheel,) = wheels.glob("mrinet-*.whl")
    subprocess.run([*PIP, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    paths = [site]
    for name in ("own_net", "own_data"):
        copy = tmp / "src" / name
        shutil.copytree(ROOT / "examples" / name, copy)
        target = tmp / f"site-{name}"
        subprocess.run(
            [
                *PIP,
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(copy),
            ],
            check=True,
        )
        paths.append(target)
    return {"pythonpath": os.pathsep.join(map(str, paths)), "tmp": tmp}


def run(installed: dict, module: str, *args: str, cwd: Path, timeout: int = 600):
    """`python -m module args` with only the installed wheel and examples on the path."""
    env = {**os.environ, "PYTHONPATH": installed["pythonpath"]}
    env.pop(ENV_CONFIG, None)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


ENV_CONFIG = "MRINET_CONFIG_PATH"


@pytest.mark.e2e
def test_own_net_trains_evaluates_predicts_and_sweeps_its_width(installed, data_dir, tmp_path):
    help_text = run(installed, "mrinet.train", "--help", cwd=tmp_path).stdout
    assert "resmlp" in help_text and "dti_resmlp" in help_text  # the package's groups, listed
    run_dir = tmp_path / "run"
    tiny = [
        "experiment=dti_resmlp",
        "data_size=tiny",
        "trainer.max_epochs=2",
        f"paths.data_dir={data_dir}",
        *QUIET,
    ]
    run(
        installed,
        "mrinet.train",
        *tiny,
        "model.net.width=16",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    net = torch.load(ckpt, weights_only=True)["mrinet"]["model"]["net"]
    assert net == {
        "_target_": "mynets.ResMLP",
        "width": 16,
        "depth": 2,
        "dropout": 0.0,
        "in_features": 5,
        "num_classes": 3,
    }
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]

    out = tmp_path / "eval"
    run(
        installed,
        "mrinet.eval",
        f"ckpt_path={ckpt}",
        f"hydra.run.dir={out}",
        TRUST.format("mynets"),
        *QUIET[:2],
        cwd=tmp_path,
    )
    evaluated = json.loads((out / "metrics.json").read_text())["test"]
    assert evaluated["test/dice_macro"] == pytest.approx(trained["test/dice_macro"], abs=1e-6)

    subject = next(data_dir.glob("dti_synthetic/*/sub-003"))  # the tiny cohort's test subject
    tissue = tmp_path / "tissue.nii.gz"
    run(
        installed,
        "mrinet.predict",
        f"ckpt_path={ckpt}",
        f"input={subject}",
        f"output={tissue}",
        TRUST.format("mynets"),
        cwd=tmp_path,
    )
    dice = json.loads((tmp_path / "tissue_dice.json").read_text())
    assert tissue.is_file() and (tmp_path / "tissue_proba.nii.gz").is_file() and dice

    sweep = tmp_path / "sweep"
    run(
        installed,
        "mrinet.train",
        "-m",
        *tiny,
        "trainer.max_epochs=1",
        "model.net.width=16,32",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    widths = sorted(
        torch.load(p, weights_only=True)["mrinet"]["model"]["net"]["width"]
        for p in sweep.glob("*/checkpoints/best.ckpt")
    )
    assert widths == [16, 32]


@pytest.mark.e2e
def test_own_datamodule_feeds_the_classifier_tissue_maps_and_checkpoints(installed, tmp_path):
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    nifti, lab = tmp_path / "nifti", tmp_path / "lab_voxels"
    simulate_dti_cohort(nifti, subjects=4, grid={"shape": [36, 44, 34], "voxel_mm": 4.0})
    run(installed, "labvoxels.convert", str(nifti), str(lab), cwd=tmp_path)
    assert len(list(lab.glob("*.npz"))) == 4
    run_dir = tmp_path / "run"
    run(
        installed,
        "mrinet.train",
        "experiment=lab_mlp",
        f"data.root={lab}",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run_dir}",
        *QUIET,
        cwd=tmp_path,
    )
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["mrinet"]["data"]["_target_"] == "labvoxels.LabVoxelDataModule"
    assert ckpt["mrinet"]["model"]["net"]["in_features"] == 4  # T1w, FA, MD and the extra SbS0
    assert ckpt["data_spec"]["input_shape"] == [4] and len(ckpt["data_spec"]["input_mean"]) == 4
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {"test/dice_thalamus", "test/dice_corpus_callosum", "test/dice_cortical_wm"} <= set(
        trained
    )
    assert trained["test/acc"] > 0.5

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert "val/tissue_maps" in events.Tags()["images"]

    out = tmp_path / "eval"
    run(
        installed,
        "mrinet.eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={out}",
        TRUST.format("labvoxels"),
        *QUIET[:2],
        cwd=tmp_path,
    )
    evaluated = json.loads((out / "metrics.json").read_text())["test"]
    assert evaluated["test/dice_macro"] == pytest.approx(trained["test/dice_macro"], abs=1e-6)
