"""A persistent Optuna study survives the login-node process being killed and resumes."""

from __future__ import annotations

import re

import pytest
from slurm_helpers import TINY, jobs_under, run_train, scontrol_job, start_train, stop, wait_until

pytestmark = pytest.mark.slurm


def test_killed_sweep_resumes_its_persistent_study_where_it_stopped(work, data_dir):
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{work / 'optuna.db'}"
    command = [
        "-m",
        *TINY,
        f"paths.data_dir={data_dir}",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage={storage}",  # the README's persistent-study line
        "hydra.sweeper.study_name=cluster",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
    ]

    def states() -> list[str]:
        try:
            study = optuna.load_study(study_name="cluster", storage=storage)
        except KeyError:
            return []
        return [t.state.name for t in study.trials]

    log = work / "first.out"
    first = start_train(work, *command, log=log)
    try:
        # 2 trials done and the 2 others running (asynchronous: each submitted as a slot
        # freed): kill the login-node process
        # a trial is RUNNING in the study from the moment it is asked, a moment before its
        # job is submitted: wait for the 4th submission too, or the kill can fall between
        def two_done_two_running() -> bool:
            found = states()
            submitted = re.findall(r"submitted SLURM job\(s\) (\S+)", log.read_text())
            return (
                found.count("COMPLETE") == 2 and found.count("RUNNING") == 2 and len(submitted) == 4
            )

        wait_until(
            two_done_two_running, 300, poll=0.2, what="2 trials done, 2 running, 4 jobs submitted"
        )
        first.terminate()
        assert first.wait(60) != 0
    finally:
        stop(first)
    ids = re.findall(r"submitted SLURM job\(s\) (\S+)", log.read_text())
    assert len(ids) == 4  # job i runs trial i (one sweeper)
    study = optuna.load_study(study_name="cluster", storage=storage)
    interrupted = [t for t in study.trials if t.user_attrs.get("mrinet_interrupted")]
    assert len(interrupted) == 2
    wait_until(
        lambda: all(s not in ("RUNNING", "COMPLETING") for _, s in jobs_under(work)),
        60,
        what="jobs cancelled",
    )
    assert [scontrol_job(ids[t.number])["JobState"] for t in interrupted] == ["CANCELLED"] * 2
    # the terminated sweeper failed its running trials and queued their parameters first
    assert sorted(states()) == sorted(["COMPLETE"] * 2 + ["FAIL"] * 2 + ["WAITING"] * 2)

    again = run_train(work, *command)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming study 'cluster': 2 trial(s) done, 0 failed, 2 interrupted" in out
    study = optuna.load_study(study_name="cluster", storage=storage)
    assert sorted(t.state.name for t in study.trials) == sorted(["COMPLETE"] * 4 + ["FAIL"] * 2)
    # the interrupted trials were the ones run again, and only they
    retried = sorted((t.user_attrs["mrinet_retry_of"], t.params) for t in study.trials[4:])
    assert retried == sorted((t.number, t.params) for t in interrupted)
    assert all(t.state.name == "COMPLETE" for t in study.trials[4:])
