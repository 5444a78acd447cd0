"""Helpers shared by several test modules (import them from here: no test module imports another).

Small real inputs written by mrinet's own writers, the entry points run as a user runs them
(a subprocess, or in-process through the guarded task), and the checks the suites share.
Fixtures built on these live in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# the labels of the tiny NIfTI subjects, and the features they hold
SHAPE = (6, 5, 4)
LABEL_MAP = {
    "thalamus": [10, 49],
    "corpus_callosum": [251, 252, 253, 254, 255],
    "cortical_wm": [2, 41],
}
FEATURES = ["T1w", "FA", "MD", "AD", "RD"]
QUIET = ["extras.print_config=false", "callbacks.progress_bar.kind=none"]

# a context MLP on the tiny cohort in seconds (tests/e2e/test_context.py, test_autocontext.py)
TINY_CONTEXT_RUN = [
    "data_size=tiny",
    "data.patch_dilation=[1,2]",  # two scales on the tiny 4 mm grid
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
]

# the tiny recon-quality CNN run on write_ghosted_reconstructions (e2e: train, export, mlflow)
TINY_CNN = [
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

# a recon-quality CNN on write_recon_dir's 24 x 24 images, cropped to 16 x 16 (reliability)
RECON = [
    "experiment=recon_quality_cnn",
    "data.source=files",
    "data.crop=[16,16]",
    "data.split=[0.5,0.25,0.25]",
    "data.preload=true",
    "model.net.channels=[4]",
    *QUIET,
]

# the smallest synthetic cohort (two subjects on a 4 mm grid) for cache tests
TINY_COHORT = {
    "subjects": 2,
    "grid": {"shape": [36, 44, 34], "voxel_mm": 4.0},
    "single_shell": {"n_b0": 2, "n_dirs": 12, "bval": 1000.0},
}


def run_module(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    """Run `python -m module args...` as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_run(cli, *overrides: str, run_dir: Path, data_dir: Path, cwd: Path, timeout: int = 300):
    """`python -m mrinet.train overrides` into run_dir on the session's data dir, asserted to
    succeed; returns the CompletedProcess."""
    proc = cli(
        "mrinet.train",
        *overrides,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=cwd,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def eval_test_metrics(cli, run_dir: Path, out: Path, cwd: Path, *overrides: str):
    """`python -m mrinet.eval` of run_dir's best checkpoint into out, asserted to succeed;
    returns (the training run's test metrics, the evaluation's), both from metrics.json."""
    proc = cli(
        "mrinet.eval",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={out}",
        "extras.print_config=false",
        *overrides,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    return trained, json.loads((out / "metrics.json").read_text())["test"]


def compose(entry: str, overrides: list[str]):
    """The composed config of an entry point (train, eval, predict), as its CLI composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name=entry, overrides=overrides)


def guarded_run(entry: str, overrides: list[str], capsys) -> str:
    """Run an entry point's task in-process as its CLI does (composed config, guarded);
    asserts exit code 1 and returns what the user sees on stderr."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import guarded, register_resolvers

    register_resolvers()
    module = __import__(f"mrinet.{entry}", fromlist=["x"])
    task = {"train": "train", "eval": "evaluate", "predict": "predict"}[entry]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=entry, overrides=overrides)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        guarded(getattr(module, task))(cfg)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def assert_clear(err: str, *needles: str) -> None:
    """One mrinet message naming the problem, the place and a fix; no library traceback."""
    assert "mrinet:" in err and "fix:" in err, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)


def subject_maps(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Plausible maps (MD/AD/RD in um^2/ms) and labels holding every class."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 10, 49, 251, 255, 2, 41, 3], size=SHAPE)
    labels.flat[:3] = [10, 251, 2]
    maps = {
        "T1w": rng.uniform(800, 1000, SHAPE),
        "FA": rng.uniform(0.1, 0.9, SHAPE),
        "MD": rng.uniform(0.5, 1.2, SHAPE),
        "AD": rng.uniform(0.8, 1.8, SHAPE),
        "RD": rng.uniform(0.2, 0.9, SHAPE),
    }
    return maps, labels


def write_nifti_subjects(folder: Path, n: int = 4) -> None:
    """`n` subject folders (maps + aparc+aseg NIfTI, 2 mm) of `subject_maps` under `folder`."""
    from mrinet.io.nifti import save_nifti

    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    for s in range(n):
        maps, labels = subject_maps(s)
        for name, values in maps.items():
            save_nifti(folder / f"sub-{s}" / f"{name}.nii.gz", values, affine, np.float32)
        save_nifti(folder / f"sub-{s}" / "aparc+aseg.nii.gz", labels, affine, np.int32)


def write_recon_dir(root: Path, volumes: int = 4, slices: int = 2, n: int = 24) -> Path:
    """Random reconstruction files in the recon/<tag>/<volume>.h5 layout (reference and R4)."""
    from mrinet.io.fastmri import write_reconstruction

    rng = np.random.default_rng(0)
    for v in range(volumes):
        for tag in ("reference_matched_R4", "pics_R4"):
            images = rng.uniform(size=(slices, n, n)).astype(np.float32)
            write_reconstruction(root / tag / f"vol{v}.h5", images, np.ones(n), {"method": "pics"})
    return root


def write_ghosted_reconstructions(root: Path, volumes: int = 6, slices: int = 4) -> Path:
    """Ellipses as the reference; the same plus a shifted ghost (aliasing-like) as `pics_R4`."""
    from mrinet.io.fastmri import write_reconstruction

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


def tiny_cohort_module(cache_dir: Path, **extra):
    """The DTI DataModule on TINY_COHORT simulated into cache_dir (three classes, no test split)."""
    from mrinet.data.tissue.voxel_module import DTIDataModule

    return DTIDataModule(
        source="synthetic",
        cache_dir=str(cache_dir),
        synthetic=TINY_COHORT,
        label_map=LABEL_MAP,
        split=[0.5, 0.5, 0.0],
        **extra,
    )


def fill(point: Path, leave: int) -> Path:
    """Fill the filesystem at `point` so that about `leave` bytes stay free; the filler file."""
    filler = point / "filler"
    free = shutil.disk_usage(point).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def tensorboard_tags(run_dir: Path) -> dict[str, set[str]]:
    """The scalar and image tags and the hparams of every TensorBoard event file under run_dir."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    tags: dict[str, set[str]] = {"scalars": set(), "images": set(), "hparams": {}}
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        found = acc.Tags()
        tags["scalars"] |= set(found["scalars"])
        tags["images"] |= set(found["images"])
        try:
            contents = acc.PluginTagToContent("hparams")
        except KeyError:  # this event file holds no hparams summary
            continue
        for content in contents.values():
            data = HParamsPluginData.FromString(content)
            for key, value in data.session_start_info.hparams.items():
                tags["hparams"][key] = value.string_value or value.number_value or value.bool_value
    return tags
