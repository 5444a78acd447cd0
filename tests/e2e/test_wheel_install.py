"""A non-editable wheel carries its configs: train from an unrelated directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# a wheel build and install, then a training from it (the examples' wheel suite is e2e too)
@pytest.mark.e2e
def test_wheel_installs_and_trains_from_another_directory(tmp_path, data_dir):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
    )
    (wheel,) = wheels.glob("mrinet-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    assert (site / "mrinet" / "configs" / "train.yaml").is_file()
    assert (site / "mrinet" / "configs" / "experiment" / "dti_mlp.yaml").is_file()

    env = {**os.environ, "PYTHONPATH": str(site), "MRINET_DATA_DIR": str(data_dir)}
    where = subprocess.run(
        [sys.executable, "-c", "import mrinet.run.config_dir as c; print(c.config_dir())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(site / "mrinet" / "configs")
    proc = subprocess.run(
        [sys.executable, "-m", "mrinet.train", "experiment=dti_mlp", "debug=fast"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((elsewhere / "logs" / "debug" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / ".hydra" / "config.yaml").is_file()
