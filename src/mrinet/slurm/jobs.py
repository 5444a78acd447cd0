"""Jobs watched to their real end: a result file, or a SLURM state that will not change.

submitit decides "done" from its result pickle or from `sacct`; without accounting (sacct
fails) a job that died without a result (time limit, out of memory, node failure, scancel)
was waited for forever, and one pending on resources no node has was waited for silently.
Here the state comes from `squeue -t all` (which knows finished jobs for MinJobAge): a
requeued job (PENDING, REQUEUED) is still running, a job that ended without a result is a
failure with its state and log named, and a job pending for a reason that never clears is
cancelled with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("mrinet.slurm")

ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
}
# pending for one of these: no node of the partition will ever run the job
HOPELESS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxMemoryPerJob",
    "QOSMaxGRESPerJob",
    "AssocMaxCpuPerJobLimit",
    "ReqNodeNotAvail",
}


@dataclass
class JobState:
    state: str
    reason: str


def squeue_states(job_ids: list[str]) -> dict[str, JobState]:
    """State and reason of each array task / job (`123_4`, `125`), finished ones included."""
    if not job_ids:
        return {}
    masters = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(masters)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("squeue failed (%s): job states not updated", err)
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = JobState(parts[1], parts[2])
    return states


def cancel(job_ids: list[str]) -> None:
    """scancel the jobs (whole arrays); never raises."""
    masters = sorted({j.split("_")[0] for j in job_ids})
    if not masters:
        return
    try:
        subprocess.run(["scancel", *masters], capture_output=True, timeout=60)
        log.warning("cancelled SLURM job(s) %s", " ".join(masters))
    except (OSError, subprocess.TimeoutExpired) as err:
        log.error("scancel %s failed: %s", " ".join(masters), err)


class JobEndedWithoutResult(RuntimeError):
    """A SLURM job left the queue (or can never start) without writing its result."""


class Watcher:
    """Jobs watched to their end one poll at a time (the sweeper's asynchronous loop polls;
    `wait` loops). `grace_s`: how long a result may lag behind the end of the job (shared
    file systems)."""

    def __init__(self, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self.pending: dict[str, object] = {}
        self._ended_at: dict[str, float] = {}
        self._announced: set[str] = set()

    def add(self, jobs: list) -> None:
        for job in jobs:
            self.pending[job.job_id] = job

    def poll(self) -> dict[str, object]:
        """One look at every pending job: {job id: its result or a JobEndedWithoutResult}
        for the jobs that ended since the last poll."""
        outcome: dict[str, object] = {}
        if not self.pending:
            return outcome
        states = squeue_states(list(self.pending))
        for job_id, job in list(self.pending.items()):
            if Path(job.paths.result_pickle).exists():
                try:
                    outcome[job_id] = job.results()[0]
                except Exception as err:  # the job raised outside Hydra's run_job
                    outcome[job_id] = JobEndedWithoutResult(
                        f"SLURM job {job_id} raised: {str(err).strip().splitlines()[-1][:300]} "
                        f"(log: {job.paths.stderr})"
                    )
                del self.pending[job_id]
                continue
            state = states.get(job_id)
            if state is None and job_id in self._announced:  # purged from the queue after its end
                state = JobState("ENDED", "")
            if state is None:
                continue
            self._announced.add(job_id)
            if state.state == "PENDING" and state.reason in HOPELESS:
                cancel([job_id])
                outcome[job_id] = JobEndedWithoutResult(
                    f"SLURM job {job_id} can never start (Reason={state.reason}): the request "
                    "does not fit the partition; see sinfo and the hydra.launcher keys"
                )
                del self.pending[job_id]
            elif state.state in ENDED or state.state == "ENDED":
                first = self._ended_at.setdefault(job_id, time.monotonic())
                if time.monotonic() - first > self.grace_s:
                    outcome[job_id] = JobEndedWithoutResult(
                        f"SLURM job {job_id} ended {state.state} without a result "
                        f"(log: {job.paths.stderr})"
                    )
                    del self.pending[job_id]
        return outcome


def wait(jobs: list, poll_s: float = 2.0, grace_s: float = 30.0) -> list[object]:
    """Wait for submitit jobs; per job its result, or a JobEndedWithoutResult (never hangs)."""
    watcher = Watcher(grace_s)
    watcher.add(jobs)
    outcome: dict[str, object] = {}
    while True:
        outcome.update(watcher.poll())
        if not watcher.pending:
            break
        time.sleep(poll_s)
    return [outcome[job.job_id] for job in jobs]


def submit_and_wait(submit, announce) -> tuple[list, list[object]]:
    """Submit (`submit()` returns submitit jobs), `announce(jobs)`, wait for every outcome.

    An interrupted login-node command takes its jobs with it: SIGTERM, SIGHUP, Ctrl-C or any
    error while submitting or waiting cancels them (kill -9 cannot be caught). (jobs, outcomes).
    """
    submitted: list = []
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, _raise_interrupt)
        submitted = submit()
        announce(submitted)
        return submitted, wait(submitted)
    except BaseException:
        cancel([j.job_id for j in submitted])
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt meanwhile (main thread only), so the
    caller's cleanup (cancelling jobs, failing trials) runs as for Ctrl-C."""
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, _raise_interrupt)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
