"""Shared fixtures: small real datasets written by mrinet's own simulators and writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY_CONTEXT_RUN, run_module


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


@pytest.fixture(scope="session")
def context_stage1(tmp_path_factory, data_dir) -> dict:
    """ONE tiny context MLP (dti_mlp_context), trained into its work dir's own logs/ as a user
    trains it: the run tests/e2e/test_context.py checks and the first stage that
    tests/e2e/test_autocontext.py's second stage finds there."""
    work = tmp_path_factory.mktemp("context-stage1")
    first = run_module(
        "mrinet.train",
        "experiment=dti_mlp_context",
        *TINY_CONTEXT_RUN,
        f"paths.data_dir={data_dir}",
        cwd=work,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    (ckpt,) = (work / "logs" / "dti_mlp_context" / "runs").glob("*/checkpoints/best.ckpt")
    return {"work": work, "dir": ckpt.parent.parent, "ckpt": ckpt}
