"""kill -9 during training, then `ckpt_path=last`: same run dir, same final metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

ARGS = [
    "experiment=dti_mlp",
    "data_size=tiny",  # configs/tiny/dti_tiny.yaml: the tiny cohort tests and debug=fast share
    "data.batch_size=512",
    "trainer.max_epochs=8",
    "extras.num_threads=1",  # two trainings side by side on a small shared CPU
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
    "trainer.enable_model_summary=false",
]


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start a training in the background; its output goes to `log` (a pipe nobody reads blocks)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mrinet.train", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_checkpoint(runs: Path, proc: subprocess.Popen, timeout: float = 240) -> Path:
    """The first last.ckpt that loads completely (not one caught while being written)."""
    from mrinet.errors import CheckpointError
    from mrinet.run.checkpoints import load_checkpoint

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for ckpt in runs.glob("*/checkpoints/last.ckpt"):
            try:
                load_checkpoint(ckpt)
                return ckpt
            except CheckpointError:
                pass
        time.sleep(0.05)
    raise AssertionError(
        f"no last.ckpt appeared (exit {proc.poll()}): {proc.stdout.read()[-3000:]}"
    )


@pytest.mark.slow
def test_kill_9_then_resume_last_continues_in_its_run_dir_with_equal_metrics(
    tmp_path, data_dir, cli
):
    common = [*ARGS, f"paths.data_dir={data_dir}"]
    reference = start(
        [*common, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path, tmp_path / "reference.out"
    )
    killed = start(
        [*common, f"paths.log_dir={tmp_path / 'logs'}"], tmp_path, tmp_path / "killed.out"
    )
    runs = tmp_path / "logs" / "dti_mlp" / "runs"
    try:
        ckpt = wait_for_checkpoint(runs, killed)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == -signal.SIGKILL
    run_dir = ckpt.parent.parent
    assert not (run_dir / "metrics.json").exists()  # it really died before the end
    from mrinet.run.checkpoints import load_checkpoint

    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] < 7
    events_before = set((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    resumed = cli(
        "mrinet.train",
        *common,
        f"paths.log_dir={tmp_path / 'logs'}",
        "ckpt_path=last",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert list(runs.iterdir()) == [run_dir]  # continued in its own run dir, no new one
    assert (
        f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    )
    # the first run's config stays; the resuming command is recorded beside it
    assert "ckpt_path" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    (resumed_cfg,) = (run_dir / ".hydra").glob("resumed-*/overrides.yaml")
    assert "ckpt_path=last" in resumed_cfg.read_text()
    events_after = set((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events_before < events_after  # the same TensorBoard log dir, a new events file

    assert reference.wait(300) == 0, (tmp_path / "reference.out").read_text()[-3000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    assert got["test"].keys() == expected["test"].keys()
    for key, value in expected["test"].items():
        assert got["test"][key] == pytest.approx(value, abs=1e-6), key
    for key in ("val/bal_acc", "val/loss", "train/loss", "train/acc"):
        assert got["final"][key] == pytest.approx(expected["final"][key], abs=1e-6), key
    assert Path(got["ckpt_path"]).parent == run_dir / "checkpoints"
