"""Preemption and time limits: requeued jobs resume and end with an uninterrupted job's metrics.

One sweep of identical jobs (the same seed and config, one varied no-op value so Hydra makes
one job each): job 0 runs undisturbed, the others get `scancel --signal=USR1` at random
instants of their training (a preemption notice), each possibly several times. Every
interrupted job checkpoints between two steps, requeues itself and resumes in its run dir.
SLURM holds a requeued job for its credential lifetime (BeginTime; 2 minutes by default,
10 s on the test cluster: `AuthInfo=cred_expire=10` in scripts/slurm_local.sh) and starts it
again by itself: the tests never force a start (`scontrol update StartTime=now` right after a
requeue can race the node's revocation of the old run's credential and fail the job).
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

# ~20-30 s of training per job on 1 CPU, ~400 steps (0.6 s) per epoch: signals land anywhere
LONG = [*TINY, "trainer.max_epochs=25", "data.batch_size=64", "model.steps_per_batch=1"]


def start_long_sweep(work: Path, data_dir: Path, log: Path, *overrides: str):
    """The long tiny-cohort sweep on the local cluster, one CPU per job, in the background."""
    return start_train(
        work,
        "-m",
        *LONG,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",  # 2 jobs at once on 2 CPUs
        *overrides,
        log=log,
    )


def submitted_ids(log: Path) -> list[str]:
    found = re.findall(r"submitted SLURM job\(s\) (.+)", log.read_text())
    return found[-1].split() if found else []


def notify(job: str) -> None:
    """`scancel --signal=USR1`: one preemption notice, as slurmctld sends one. The job may
    already be requeueing when scancel hears back ("Job can not be altered now"); scancel then
    retries every few seconds and would signal the requeued run as it starts: stop it."""
    try:
        subprocess.run(["scancel", "--signal=USR1", job], timeout=2, capture_output=True)
    except subprocess.TimeoutExpired:
        pass


def training_started(run_dir: Path, restarts: int) -> bool:
    """The job's current run is training: each run (first, resumed) opens its own events file."""
    return len(list(run_dir.glob("tensorboard/events.out.tfevents.*"))) > restarts


@pytest.mark.parametrize("n_jobs, signals_per_job", [(6, 2)])
def test_preempted_jobs_resume_with_the_uninterrupted_metrics(
    work, data_dir, n_jobs, signals_per_job
):
    rng = random.Random(14)
    log = work / "launcher.out"
    launcher = start_long_sweep(
        work, data_dir, log, f"+copy={','.join(str(i) for i in range(n_jobs))}"
    )
    try:
        ids = wait_until(lambda: submitted_ids(log), 120, what="the array to be submitted")
        sweep = next((work / "logs" / "dti_mlp" / "multiruns").iterdir())
        sent: dict[str, int] = {}
        deadline = time.monotonic() + 900
        while launcher.poll() is None and time.monotonic() < deadline:
            for i, job in enumerate(ids[1:], start=1):
                if sent.get(job, 0) >= signals_per_job:
                    continue
                info = scontrol_job(job)
                restarts = int(info.get("Restarts", 0))
                if info.get("JobState") != "RUNNING" or restarts != sent.get(job, 0):
                    continue  # not running, or the last notice not yet acted on
                if not training_started(sweep / str(i), restarts):
                    continue
                # a random instant of this run's training: anywhere in an epoch
                if rng.random() < 0.15:
                    notify(job)
                    sent[job] = sent.get(job, 0) + 1
            time.sleep(0.5)
        assert launcher.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, log.read_text()[
            -3000:
        ]
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
        # every notice was a requeue and a resume, except one landing after the last step
        job_log = "".join(p.read_text() for p in sweep.glob(f".submitit/{job}/*_log.*"))
        finished = "requeue signal after the last training step" in job_log
        assert sent.get(job, 0) == restarts[job] + finished, (job, sent, restarts)
    assert restarts[ids[0]] == 0
    assert "OSError" not in "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))
    assert "Traceback" not in out
    print(
        f"\npreemption notices: {sum(sent.values())}, resumes: {sum(restarts.values())}; {restarts}"
    )


# SLURM sends the --signal notice "up to 60 s earlier than specified" (its event resolution):
# with a 2-minute limit and USR1@45 it lands 15-75 s into a run, after the start-up (~6-10 s)
# and at least 45 s before the kill. ~90 s of training (110 tiny epochs at ~0.8 s, no early
# stop) outlasts the latest notice, so the first run is always interrupted mid-training.
TIME_LIMITED = [
    "trainer.max_epochs=110",
    "callbacks.early_stopping.patience=1000",
    "+copy=0",
]


def test_a_time_limit_requeues_and_the_job_completes(work, data_dir):
    """A real time limit, with the notice before it: the job checkpoints, requeues, resumes and
    ends with the test metrics of the same job run beside it (1 CPU each) without a limit."""
    log, reference_log = work / "launcher.out", work / "reference" / "launcher.out"
    reference_log.parent.mkdir()
    launcher = start_long_sweep(
        work,
        data_dir,
        log,
        *TIME_LIMITED,
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.additional_parameters.signal=USR1@45",
    )
    reference = start_long_sweep(reference_log.parent, data_dir, reference_log, *TIME_LIMITED)
    try:
        (job,) = wait_until(lambda: submitted_ids(log), 120, what="the job to be submitted")
        deadline = time.monotonic() + 600
        while launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert launcher.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, log.read_text()[
            -3000:
        ]
        assert reference.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, (
            reference_log.read_text()[-3000:]
        )
    finally:
        stop(launcher)
        stop(reference)
    sweep = next((work / "logs" / "dti_mlp" / "multiruns").iterdir())
    (row,) = read_summary(sweep)
    assert row["status"] == "ok", row
    restarts = int(scontrol_job(job)["Restarts"])
    job_log = "".join(p.read_text() for p in sweep.glob(f".submitit/{job}/*_log.*"))
    # every requeue after the first step saved one hpc checkpoint; one landing before it (a
    # slow start-up) had nothing to keep
    saved = len(list((sweep / "0").glob("hpc_ckpt_*.ckpt")))
    assert restarts >= 1 and saved >= 1, (restarts, saved, job_log[-3000:])
    assert saved <= restarts and job_log.count("requeued SLURM job") == restarts
    got = json.loads((sweep / "0" / "metrics.json").read_text())["test"]
    reference_sweep = next((reference_log.parent / "logs" / "dti_mlp" / "multiruns").iterdir())
    expected = json.loads((reference_sweep / "0" / "metrics.json").read_text())["test"]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    print(f"\ntime limit: {restarts} requeue(s), {saved} checkpoint(s) before completing")


def test_killing_the_launcher_cancels_its_jobs(work, data_dir):
    log = work / "launcher.out"
    launcher = start_long_sweep(work, data_dir, log, "+copy=0,1,2")
    try:
        ids = wait_until(lambda: submitted_ids(log), 120, what="the array to be submitted")
        wait_until(
            lambda: any(scontrol_job(j)["JobState"] == "RUNNING" for j in ids),
            120,
            what="a running job",
        )
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
