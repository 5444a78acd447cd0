"""Shared fixtures: small real datasets written by mrinet's own simulators and writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


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


# a context MLP on the tiny cohort in seconds (tests/e2e/test_context.py, test_autocontext.py)
TINY_CONTEXT_RUN = [
    "data_size=tiny",
    "data.patch_dilation=[1,2]",  # two scales on the tiny 4 mm grid
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
]


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


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data dir per test session, so simulated cohorts are generated once and reused."""
    return tmp_path_factory.mktemp("mrinet-data")


@pytest.fixture
def write_subject():
    """Write one NIfTI subject folder with the given maps and labels (2 mm voxels)."""
    from mrinet.io.nifti import save_nifti

    def write(folder: Path, maps: dict[str, np.ndarray], labels: np.ndarray, affine=None) -> Path:
        affine = np.diag([-2.0, 2.0, 2.0, 1.0]) if affine is None else affine
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in maps.items():
            save_nifti(folder / f"{name}.nii.gz", np.asarray(values, dtype=np.float32), affine)
        save_nifti(folder / "aparc+aseg.nii.gz", labels.astype(np.int32), affine)
        return folder

    return write


@pytest.fixture(scope="session")
def cli():
    """`cli("mrinet.train", "key=value", ..., cwd=tmp)` runs an entry point in a subprocess."""
    return run_module
