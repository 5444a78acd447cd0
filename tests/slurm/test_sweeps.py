"""Grid and Optuna sweeps through hydra/launcher=slurm with the launcher defaults a user gets."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from slurm_helpers import TINY, only_sweep_dir, read_summary, run_train, scontrol_job, wait_until

pytestmark = pytest.mark.slurm


def slurm_ids(out: str) -> list[str]:
    (line,) = re.findall(r"submitted SLURM job\(s\) (.+)", out)[-1:]
    return line.split()


STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def first_time(pattern: str, text: str) -> datetime:
    match = re.search(STAMP + r".{0,80}?" + pattern, text) or re.search(
        pattern + r".{0,40}?" + STAMP, text
    )
    assert match, pattern
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")


def overheads(out: str, sweep: Path) -> list[tuple[float, float]]:
    """Per job: (submit -> job start, submit -> first training step) in seconds, from the
    launcher's and submitit's timestamped lines (Lightning sets its signal handlers right before
    the first step)."""
    submitted = first_time(r"submitted SLURM job", out)
    found = []
    for log in sorted(sweep.glob(".submitit/*_*/*_log.out")):
        text = log.read_text()
        started = first_time(
            r"- Starting with JobEnvironment", text.replace("submitit INFO (", "[")
        )
        training = first_time(r"SLURM auto-requeueing enabled", text)
        found.append(
            ((started - submitted).total_seconds(), (training - submitted).total_seconds())
        )
    return found


def test_grid_sweep_of_4_jobs_completes_with_the_shipped_launcher_defaults(work, data_dir):
    start = time.monotonic()
    proc = run_train(
        work,
        "-m",
        *TINY,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "model.optimizer.lr=1e-3,3e-3,1e-2,3e-2",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # auto resources sized from the partition (scripts/slurm_local.sh: one node, nproc CPUs)
    assert re.search(
        r"SLURM partition local: per job 1 task\(s\) x \d+ CPU\(s\), \d+ GB, 0 GPU", out
    )
    sweep = only_sweep_dir(work)
    rows = read_summary(sweep)
    assert [r["status"] for r in rows] == ["ok"] * 4, rows
    for row in rows:
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        # the cluster layer, not model quality: every job tested its best checkpoint
        assert 0.0 <= metrics["test"]["test/bal_acc"] <= 1.0 and metrics["ckpt_path"]
    ids = slurm_ids(out)
    assert len(ids) == 4
    # the result is written before the process ends: SLURM may still say COMPLETING
    wait_until(
        lambda: all(scontrol_job(j)["JobState"] == "COMPLETED" for j in ids), 60, what="COMPLETED"
    )
    # plain line logs off a terminal (progress_bar kind=auto): no carriage returns, no escapes
    logs = list(sweep.glob(".submitit/*/*_log.*"))
    assert len(logs) == 8, logs
    for log in logs:
        text = log.read_text()
        assert "\r" not in text and "\x1b" not in text, (log, text[-500:])
    first_out = next(sweep.glob(".submitit/*_0/*_0_log.out")).read_text()
    assert re.search(r"epoch 1/2 .*step \d+/\d+", first_out), first_out[-2000:]
    figures = overheads(out, sweep)
    print(
        f"\ngrid of 4 (auto resources): command {time.monotonic() - start:.1f} s; per job "
        "submit->start / submit->first training step (s): "
        + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in figures)
    )


def test_optuna_sweep_of_4_trials_2_in_parallel_completes(work, data_dir):
    proc = run_train(
        work,
        "-m",
        *TINY,
        f"paths.data_dir={data_dir}",
        "hparams_search=dti_mlp_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=slurm",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # asynchronous trials: one job per trial, each submitted when a slot (of 2) freed
    assert len(re.findall(r"submitted SLURM job\(s\) \S+\n", out)) == 4
    rows = read_summary(only_sweep_dir(work))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    assert "Best value" in out or "Best parameters" in out


def test_a_failed_job_is_failed_in_the_summary_and_in_slurm(work, data_dir):
    proc = run_train(
        work,
        "-m",
        *TINY,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "data.batch_size=512,0",  # 0: a ConfigError in job 1
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]  # Hydra's basic sweeper: a failed job fails the sweep
    rows = read_summary(only_sweep_dir(work))
    assert [r["status"] for r in rows] == ["ok", "failed"], rows
    assert rows[1]["error"].startswith("ConfigError: data.batch_size must be a positive")
    ok, failed = slurm_ids(out)
    wait_until(lambda: scontrol_job(ok)["JobState"] == "COMPLETED", 60, what="COMPLETED")
    wait_until(lambda: scontrol_job(failed)["JobState"] == "FAILED", 60, what="FAILED")
    assert scontrol_job(failed)["ExitCode"] == "1:0"
