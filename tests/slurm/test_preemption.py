"""Preemption and time limits: requeued jobs resume and end with an uninterrupted job's metrics.

One sweep of identical jobs (the same seed and config, one varied no-op value so Hydra makes
one job each): job 0 runs undisturbed, the others get `scancel --signal=USR1` at random
instants of their training (a preemption notice), each possibly several times. Every
interrupted job checkpoints between two steps, requeues itself and resumes in its run dir.
SLURM holds a requeued job for about 2 minutes (BeginTime); the test releases it at once
(`scontrol update StartTime=now`) to keep the suite short: the job is the same.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_helpers import (
    TINY,
    jobs_under,
    read_summary,
    scontrol_job,
    start_train,
    stop,
    wait_until,
)

pytestmark = pytest.mark.slurm

# ~25-40 s of training per job on 1 CPU: long enough to land signals in every part of epochs
LONG = [*TINY, "trainer.max_epochs=12", "data.batch_size=128", "model.steps_per_batch=4"]


def submitted_ids(log: Path) -> list[str]:
    found = re.findall(r"submitted SLURM job\(s\) (.+)", log.read_text())
    return found[-1].split() if found else []


def release_requeued(job_ids: list[str]) -> None:
    """Requeued jobs wait for BeginTime (~120 s): start them now."""
    for job in job_ids:
        info = scontrol_job(job)
        if info.get("JobState") == "PENDING" and info.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=60)


def training_started(run_dir: Path) -> bool:
    return bool(list(run_dir.glob("tensorboard/events.out.tfevents.*")))


@pytest.mark.parametrize("n_jobs, signals_per_job", [(6, 2)])
def test_preempted_jobs_resume_with_the_uninterrupted_metrics(work, data_dir, n_jobs, signals_per_job):
    rng = random.Random(14)
    log = work / "launcher.out"
    launcher = start_train(
        work,
        "-m",
        *LONG,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",  # 2 jobs at once on 2 CPUs
        f"+copy={','.join(str(i) for i in range(n_jobs))}",
        log=log,
    )
    try:
        ids = wait_until(lambda: submitted_ids(log), 120, what="the array to be submitted")
        sweep = next((work / "logs" / "dti_mlp" / "multiruns").iterdir())
        sent: dict[str, int] = {}
        landed: list[tuple[str, float]] = []
        deadline = time.monotonic() + 900
        while launcher.poll() is None and time.monotonic() < deadline:
            release_requeued(ids)
            for i, job in enumerate(ids[1:], start=1):
                if sent.get(job, 0) >= signals_per_job:
                    continue
                info = scontrol_job(job)
                if info.get("JobState") != "RUNNING" or not training_started(sweep / str(i)):
                    continue
                # a random instant of this run's training: anywhere in an epoch
                if rng.random() < 0.15:
                    subprocess.run(["scancel", "--signal=USR1", job], timeout=60)
                    sent[job] = sent.get(job, 0) + 1
                    landed.append((job, time.monotonic()))
                    time.sleep(1.0)  # one notice per run: let it requeue first
            time.sleep(0.5)
        assert launcher.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, log.read_text()[-3000:]
    finally:
        stop(launcher)
    out = log.read_text()
    assert sum(sent.values()) >= n_jobs - 1, sent
    rows = read_summary(sweep)
    assert [r["status"] for r in rows] == ["ok"] * n_jobs, rows  # never reported failed
    reference = json.loads((sweep / "0" / "metrics.json").read_text())
    restarts = {}
    for i, job in enumerate(ids):
        run = sweep / str(i)
        got = json.loads((run / "metrics.json").read_text())
        for key, value in reference["test"].items():
            assert got["test"][key] == pytest.approx(value, abs=1e-6), (i, key)
        restarts[job] = int(scontrol_job(job)["Restarts"])
        if i:
            assert len(list(run.glob("hpc_ckpt_*.ckpt"))) == restarts[job], (i, restarts[job])
    assert restarts[ids[0]] == 0
    assert sum(restarts.values()) == sum(sent.values()), (restarts, sent)
    assert "OSError" not in "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))
    assert "Traceback" not in out
    print(f"\npreemptions: {sum(sent.values())} sent, {sum(restarts.values())} resumed; {restarts}")


def test_a_time_limit_requeues_and_the_job_completes(work, data_dir):
    """A real time limit: 2 minutes with the notice 90 s before it (at ~30 s of running)."""
    log = work / "launcher.out"
    launcher = start_train(
        work,
        "-m",
        *LONG,
        "trainer.max_epochs=40",
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.additional_parameters.signal=USR1@90",
        "+copy=0,1",
        log=log,
    )
    try:
        ids = wait_until(lambda: submitted_ids(log), 120, what="the array to be submitted")
        deadline = time.monotonic() + 600
        while launcher.poll() is None and time.monotonic() < deadline:
            release_requeued(ids)
            time.sleep(1)
        assert launcher.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, log.read_text()[-3000:]
    finally:
        stop(launcher)
    sweep = next((work / "logs" / "dti_mlp" / "multiruns").iterdir())
    rows = read_summary(sweep)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert all(int(scontrol_job(j)["Restarts"]) >= 1 for j in ids)
    first, second = (json.loads((sweep / str(i) / "metrics.json").read_text()) for i in (0, 1))
    for key, value in first["test"].items():
        assert second["test"][key] == pytest.approx(value, abs=1e-6), key


def test_killing_the_launcher_cancels_its_jobs(work, data_dir):
    log = work / "launcher.out"
    launcher = start_train(
        work,
        "-m",
        *LONG,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "+copy=0,1,2",
        log=log,
    )
    try:
        ids = wait_until(lambda: submitted_ids(log), 120, what="the array to be submitted")
        wait_until(lambda: any(scontrol_job(j)["JobState"] == "RUNNING" for j in ids), 120, what="a running job")
        launcher.terminate()  # SIGTERM, as `kill` or a closing login session (SIGHUP) would
        assert launcher.wait(timeout=60) != 0
    finally:
        stop(launcher)
    wait_until(
        lambda: all(s in ("CANCELLED",) for _, s in jobs_under(work)),
        60,
        what=f"the jobs to be cancelled: {jobs_under(work)}",
    )
    assert "cancelled SLURM job(s)" in log.read_text()
