"""Helpers of the slurm suite (imported by its tests; conftest.py puts this dir on sys.path)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# the tiny cohort of tests/e2e (about 10 s per job on 1-2 CPUs); progress bars left at the
# shipped `auto`, so the logs show what a user's SLURM logs show
TINY = [
    "experiment=dti_mlp",
    "data_size=tiny",  # configs/tiny/dti_tiny.yaml
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "trainer.enable_model_summary=false",
]


def cluster_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def env_for_jobs(extra: dict | None = None) -> dict:
    """The command's environment; sbatch exports it to the jobs (they import this checkout)."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def jobs_under(folder: Path) -> list[tuple[str, str]]:
    """(job id, state) of the jobs whose working dir is in `folder`, finished ones included."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%Z"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    found = []
    for line in out.splitlines():
        job, state, workdir = line.split("|", 2)
        if Path(workdir).resolve().is_relative_to(folder.resolve()):
            found.append((job, state))
    return found


def cancel_under(folder: Path) -> None:
    live = [
        j for j, s in jobs_under(folder) if s in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
    ]
    if live:
        subprocess.run(["scancel", *sorted({j.split("_")[0] for j in live})], timeout=60)


def run_train(work: Path, *args: str, timeout: int = 400, env: dict | None = None):
    """`python -m mrinet.train args` in `work` (as on a login node), bounded by `timeout`."""
    return subprocess.run(
        [sys.executable, "-m", "mrinet.train", *args],
        cwd=work,
        env=env_for_jobs(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_train(work: Path, *args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    """The same in the background (its output in `log`), in its own process group."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mrinet.train", *args],
            cwd=work,
            env=env_for_jobs(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def only_sweep_dir(work: Path, task: str = "dti_mlp") -> Path:
    (sweep,) = (work / "logs" / task / "multiruns").iterdir()
    return sweep


def read_summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o` of one job or array task (JobState, Restarts, ExitCode, ...)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60
    ).stdout
    array, _, task = job_id.partition("_")
    for line in out.splitlines():
        fields = dict(t.partition("=")[::2] for t in line.split())
        if not task or (fields.get("ArrayJobId") == array and fields.get("ArrayTaskId") == task):
            return fields
    raise AssertionError(f"scontrol does not know job {job_id}: {out[:500]}")


def wait_until(predicate, timeout: float, poll: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
