"""mrinet's Optuna sweeper on the real cluster: asynchronous pruned trials (one preempted and
resumed mid-run), and two sweepers feeding one journal study."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from slurm_helpers import TINY, read_summary, scontrol_job, start_train, stop, wait_until

pytestmark = pytest.mark.slurm

# ~10-20 s per trial on 1 CPU (400 steps of 0.02-0.04 s per epoch)
LONGER = [*TINY, "trainer.max_epochs=10", "data.batch_size=64", "model.steps_per_batch=1"]


def journal_study(path: Path, name: str = "dti_mlp"):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def search(data_dir: Path, journal: Path, *extra: str) -> list[str]:
    return [
        "-m",
        *LONGER,
        f"paths.data_dir={data_dir}",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage=journal:{journal}",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "model.optimizer.weight_decay=0",
        "model.net.hidden_dims=[16]",
        "model.net.dropout=0",
        *extra,
    ]


def reported_steps(journal: Path) -> Counter:
    """(trial id, step) -> how many times the journal holds an intermediate value for it."""
    counts: Counter = Counter()
    for line in journal.read_text().splitlines():
        op = json.loads(line)
        if "step" in op and "intermediate_value" in op:
            counts[(op["trial_id"], op["step"])] += 1
    return counts


def test_async_pruned_sweep_with_a_preempted_trial(work, data_dir):
    import optuna

    journal = work / "study.journal"
    log = work / "sweep.out"
    sweeper = start_train(
        work,
        *search(
            data_dir,
            journal,
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler=grid",
            "hydra.sweeper.pruner=median",
            "hydra.sweeper.pruner_options.n_startup_trials=1",
            "model.optimizer.lr=choice(3e-3,1e-3,1e-7)",  # 1e-7 learns nothing: pruned
            "+copy=choice(0,1)",
            "callbacks.early_stopping.patience=1000",
        ),
        log=log,
    )
    try:
        # preempt the first trial that has reported an epoch: USR1, as a preemption notice
        def running_with_a_report():
            ids = re.findall(r"submitted SLURM job\(s\) (\S+)", log.read_text())
            if not journal.exists() or not ids:
                return None
            study = journal_study(journal)
            for t in study.get_trials(deepcopy=False):
                if t.state.name == "RUNNING" and t.intermediate_values and t.number < len(ids):
                    if scontrol_job(ids[t.number]).get("JobState") == "RUNNING":
                        return t.number, ids[t.number]
            return None

        number, job = wait_until(running_with_a_report, 400, poll=0.5, what="a reporting trial")
        subprocess.run(["scancel", "--signal=USR1", job], timeout=5, capture_output=True)
        wait_until(lambda: int(scontrol_job(job).get("Restarts", 0)) >= 1, 300, what="the requeue")
        deadline = time.monotonic() + 900
        while sweeper.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert sweeper.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, log.read_text()[
            -3000:
        ]
    finally:
        stop(sweeper)
    out = log.read_text()
    study = journal_study(journal)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6
    states = Counter(t.state.name for t in trials)
    assert states["PRUNED"] >= 1 and states["COMPLETE"] + states["PRUNED"] == 6, states
    # the median pruner's rule: a pruned trial was below the median of the finished ones at
    # its last step (so below the best of them)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    for t in trials:
        if t.state.name == "PRUNED":
            best = max(c.intermediate_values[t.last_step] for c in complete)
            assert t.value < best, (t.number, t.value, best)
    # the preempted trial resumed in its run dir and reported on: every epoch once, in order
    preempted = trials[number]
    assert preempted.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    steps = sorted(preempted.intermediate_values)
    assert steps == list(range(len(steps))) and len(steps) >= 2
    assert max(reported_steps(journal).values()) == 1, "a step was reported twice"
    sweep = next((work / "logs" / "dti_mlp" / "multiruns").iterdir())
    assert list((sweep / str(number)).glob("hpc_ckpt_*.ckpt")), "no hpc checkpoint: no resume"
    rows = {int(r["job"]): r for r in read_summary(sweep)}
    for t in trials:
        assert rows[t.number]["state"] == t.state.name.lower(), (t.number, rows[t.number])
    assert "trial(s) pruned" in out


def test_two_sweepers_on_one_journal_run_distinct_trials(work, data_dir):
    journal = work / "shared.journal"
    command = search(
        data_dir,
        journal,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "trainer.max_epochs=3",
        "hydra.sweeper.heartbeat_s=2",
        "hydra.sweeper.grace_s=10",  # shorter than a trial: a wrong stale verdict would show
    )
    logs = [work / "a.out", work / "b.out"]
    first = start_train(work, *command, log=logs[0])
    time.sleep(3)
    second = start_train(work, *command, log=logs[1])
    try:
        for proc, log in zip((first, second), logs):
            assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        stop(first)
        stop(second)
    trials = journal_study(journal).get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    assert states["FAIL"] == 0 and states["RUNNING"] == 0, states
    assert 4 <= states["COMPLETE"] <= 5, states  # a race for the last slot: one more at most
    sweeps = sorted((work / "logs" / "dti_mlp" / "multiruns").iterdir())
    assert len(sweeps) == 2
    numbers = [int(p.name) for s in sweeps for p in s.iterdir() if p.name.isdigit()]
    assert sorted(numbers) == sorted(t.number for t in trials)  # unique job numbers
    ids = [
        i for log in logs for i in re.findall(r"submitted SLURM job\(s\) (\S+)", log.read_text())
    ]
    assert len(ids) == len(set(ids)) == len(trials)
