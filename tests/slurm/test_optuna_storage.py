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
        # the first batch of 2 done and the second submitted: kill the login-node process
        def batch_2() -> list[str]:
            found = re.findall(r"submitted SLURM job\(s\) (.+)", log.read_text())
            return found[1].split() if len(found) == 2 else []

        second = wait_until(batch_2, 300, poll=0.2, what="batch 2 to be submitted")
        first.terminate()
        assert first.wait(60) != 0
    finally:
        stop(first)
    wait_until(
        lambda: all(s not in ("RUNNING", "COMPLETING") for _, s in jobs_under(work)),
        60,
        what="jobs cancelled",
    )
    assert [scontrol_job(j)["JobState"] for j in second] == ["CANCELLED", "CANCELLED"]
    assert states() == ["COMPLETE", "COMPLETE", "RUNNING", "RUNNING"]
    interrupted = [
        t.params for t in optuna.load_study(study_name="cluster", storage=storage).trials[2:]
    ]

    again = run_train(work, *command)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming study 'cluster': 2 trial(s) done, 0 failed, 2 interrupted" in out
    study = optuna.load_study(study_name="cluster", storage=storage)
    assert [t.state.name for t in study.trials] == [
        "COMPLETE",
        "COMPLETE",
        "FAIL",
        "FAIL",
        "COMPLETE",
        "COMPLETE",
    ]
    # the interrupted trials were the ones run again, and only they
    assert [t.params for t in study.trials[4:]] == interrupted
