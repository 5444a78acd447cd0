"""mrinet's Optuna sweeper through real Hydra and real Optuna storages (SQLite and journal
files), on a deterministic toy objective (toy_app.py): pruning, asynchronous trials, shared
studies, resume after a kill, and every bad setting refused before a trial runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP = HERE / "toy_app.py"


def env(tmp: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TOY_SWEEP_DIR": str(tmp / "sweeps"),
        "PYTHONUNBUFFERED": "1",
    }


def command(*overrides: str) -> list[str]:
    return [sys.executable, str(APP), f"hydra.searchpath=[file://{ROOT / 'configs'}]", *overrides]


def toy(tmp: Path, *overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*overrides),
        cwd=tmp,
        env=env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_toy(tmp: Path, log: Path, *overrides: str) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command(*overrides),
            cwd=tmp,
            env=env(tmp),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def sweep_dirs(tmp: Path) -> list[Path]:
    root = tmp / "sweeps"
    return sorted(root.iterdir()) if root.is_dir() else []


def summary(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def states(storage: str, name: str = "toy") -> list[str]:
    study = optuna.load_study(study_name=name, storage=journal_or_url(storage))
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def journal_or_url(storage: str):
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(storage[len("journal:") :]))
    return storage


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", marks=pytest.mark.e2e),  # the same sweep on a second storage
        "journal",
    ],
)
def test_pruning_stops_the_worst_trials_pruned_in_study_and_summary(tmp_path, kind):
    storage = (
        f"sqlite:///{tmp_path / 'optuna.db'}"
        if kind == "sqlite"
        else f"journal:{tmp_path / 'study.journal'}"
    )
    proc = toy(
        tmp_path,
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_options.n_startup_trials=2",
        "epochs=6",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="toy", storage=journal_or_url(storage))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert pruned and complete and len(pruned) + len(complete) == 8
    # the toy's value is worse at every epoch the farther x is from 0.7: every pruned trial
    # is worse (at its last epoch) than the best complete trial was at the same epoch
    best = max(complete, key=lambda t: t.value)
    for t in pruned:
        step = t.last_step
        assert step < 5 and t.value == t.intermediate_values[step]
        assert t.value < best.intermediate_values[step]
        assert abs(t.params["x"] - 0.7) > abs(best.params["x"] - 0.7)
    (sweep,) = sweep_dirs(tmp_path)
    rows = {int(r["job"]): r for r in summary(sweep)}
    assert sorted(rows) == [t.number for t in trials]  # job number = trial number
    for t in trials:
        row = rows[t.number]
        assert row["state"] == t.state.name.lower().replace("complete", "complete"), row
        if t.state.name == "PRUNED":
            assert row["state"] == "pruned"
            assert int(row["epochs"]) == t.last_step + 1 < 6
            assert float(row["val/score"]) == pytest.approx(t.value, rel=1e-5)
        else:
            assert row["state"] == "complete" and row["epochs"] == "6"
        assert row["started"] and row["ended"] and row["started"] <= row["ended"]
    assert f"{len(pruned)} trial(s) pruned" in proc.stdout and "CPU hours" in proc.stdout


def test_async_trials_start_the_moment_a_slot_frees(tmp_path):
    """2 slots, trials of 1 and 12 epochs: a trial starts while an earlier, longer one runs
    (with a margin of 11 s for the next process to start, slow on a loaded machine)."""
    proc = toy(
        tmp_path,
        "hydra/launcher=local",
        f"hydra.sweeper.storage=journal:{tmp_path / 'study.journal'}",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=3",  # the grid's first two points: 12 epochs, then 1
        "epoch_s=1.0",
        "epochs=choice(1,12)",
        "x=choice(0.2,0.6)",
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    times = {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/times.json")}
    assert sorted(times) == [0, 1, 2, 3]
    order = sorted(times, key=lambda n: times[n]["start"])
    first_wave = order[:2]
    assert times[first_wave[0]]["end"] != pytest.approx(times[first_wave[1]]["end"], abs=2.0), (
        "the seeded grid gave the first two trials the same length"
    )
    # the third trial started before the slowest trial of the first wave ended
    third = order[2]
    slowest_end = max(times[n]["end"] for n in first_wave)
    assert times[third]["start"] < slowest_end - 0.5, times
    assert len({t["pid"] for t in times.values()}) == 4  # one process per trial
    rows = summary(sweep)
    assert [r["state"] for r in rows] == ["complete"] * 4


@pytest.mark.e2e  # two sweepers on one study: the slurm suite's case
def test_two_sweepers_share_one_journal_study(tmp_path):
    """Two sweepers at once on one journal: distinct trials and job numbers, n_trials in all,
    and neither fails the other's running trials (heartbeats, short grace period)."""
    storage = f"journal:{tmp_path / 'shared.journal'}"
    common = [
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.heartbeat_s=0.5",
        "hydra.sweeper.grace_s=2",
        "epochs=4",
        "epoch_s=0.8",  # each trial (~3 s) outlives the grace period
    ]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = start_toy(tmp_path, logs[0], *common)
    time.sleep(1.5)
    second = start_toy(tmp_path, logs[1], *common)
    try:
        assert first.wait(240) == 0, logs[0].read_text()[-3000:]
        assert second.wait(240) == 0, logs[1].read_text()[-3000:]
    finally:
        for p in (first, second):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    found = states(storage)
    assert "FAIL" not in found and "RUNNING" not in found, found
    assert 6 <= found.count("COMPLETE") <= 7, found  # a race for the last slot: one more
    sweeps = sweep_dirs(tmp_path)
    assert len(sweeps) == 2
    jobs = [int(p.name) for s in sweeps for p in s.iterdir() if p.name.isdigit()]
    assert len(jobs) == len(set(jobs)) == len(found)  # unique job numbers = trial numbers
    assert all(jobs_of := [[p.name for p in s.iterdir() if p.name.isdigit()] for s in sweeps])
    assert all(len(j) >= 1 for j in jobs_of)  # both sweepers ran trials


def test_a_killed_sweeper_is_resumed_by_the_same_command(tmp_path):
    """kill -9 mid-trial: the rerun fails the stale trial once its sweeper's heartbeat is
    older than grace_s, runs its parameters first, and stops at n_trials in the study."""
    storage = f"journal:{tmp_path / 'study.journal'}"
    common = [
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.heartbeat_s=0.5",
        "hydra.sweeper.grace_s=1",
        "epochs=3",
        "epoch_s=1.0",
    ]
    log = tmp_path / "first.log"
    first = start_toy(tmp_path, log, *common)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (tmp_path / "study.journal").exists() and states(storage).count("COMPLETE") >= 1:
                if "RUNNING" in states(storage):
                    break
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    before = optuna.load_study(study_name="toy", storage=journal_or_url(storage)).trials
    running = [t for t in before if t.state.name == "RUNNING"]
    assert len(running) == 1, [t.state.name for t in before]
    done_before = sum(t.state.name == "COMPLETE" for t in before)
    time.sleep(1.5)  # the dead sweeper's heartbeat is now older than grace_s
    again = toy(tmp_path, *common)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert f"resuming study 'toy': {done_before} trial(s) done, 0 failed, 1 interrupted" in out
    after = optuna.load_study(study_name="toy", storage=journal_or_url(storage)).trials
    stale = after[running[0].number]
    assert stale.state.name == "FAIL" and stale.user_attrs["mrinet_interrupted"]
    retry = [t for t in after if t.user_attrs.get("mrinet_retry_of") == running[0].number]
    assert len(retry) == 1 and retry[0].params == running[0].params
    assert retry[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in after) == 4  # n_trials counts the study


@pytest.mark.parametrize(
    "overrides, key, fix",
    [
        (["hydra.sweeper.pruner=sometimes"], "hydra.sweeper.pruner", "one of none, median"),
        (["hydra.sweeper.sampler=annealing"], "hydra.sweeper.sampler", "one of tpe, random"),
        (
            ["hydra.sweeper.pruner=median", "hydra.sweeper.pruner_options.min_resource=2"],
            "hydra.sweeper.pruner_options",
            "MedianPruner",
        ),
        (
            ["hydra.sweeper.storage=journal:/nonexistent/dir/s.journal"],
            "hydra.sweeper.storage",
            "mkdir -p /nonexistent/dir",
        ),
        (
            ["hydra.sweeper.storage=sqlite:////nonexistent/dir/o.db"],
            "hydra.sweeper.storage",
            "sqlite:////abs/path",
        ),
        (["hydra.sweeper.storage=optuna.db"], "hydra.sweeper.storage", "journal:"),
        (
            ["hydra.sweeper.pruner=median", "optimized_metric=test/score"],
            "optimized_metric",
            "val/",
        ),
        (
            ["hydra.sweeper.pruner=median", "hydra/launcher=local"],
            "hydra.sweeper.storage",
            "hydra.sweeper.storage=journal:",
        ),
        (["hydra.sweeper.params.x='interval(0.1'"], "hydra.sweeper.params.x", "interval(low,high)"),
        (["x=tag(log, choice(1,2))"], "command line: x=tag(log, choice(1,2))", "interval"),
        (["hydra.sweeper.sampler=grid"], "hydra.sweeper.params.x", "choice(...)"),
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs", "integer >= 1"),
        (["+nosuch.key=choice(1,2)", "nosuch2=choice(1,2)"], "hydra.sweeper.params", "prefix +"),
    ],
)
def test_bad_settings_are_refused_before_any_trial(tmp_path, overrides, key, fix):
    storage_given = any("storage=" in o for o in overrides)
    journal = tmp_path / "j.journal"
    extra = (
        []
        if storage_given or "hydra/launcher=local" in overrides
        else [f"hydra.sweeper.storage=journal:{journal}"]
    )
    proc = toy(tmp_path, *extra, *overrides, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert f"where: {key}" in out and fix in out, out[-2000:]
    assert "Traceback" not in out
    # nothing ran, the study untouched
    assert not any(s.glob("*/.hydra") for s in sweep_dirs(tmp_path))
    if journal.exists():
        with pytest.raises(KeyError):
            optuna.load_study(study_name="toy", storage=journal_or_url(f"journal:{journal}"))


def test_a_study_that_exists_with_the_other_direction_is_refused(tmp_path):
    storage = f"journal:{tmp_path / 'j.journal'}"
    optuna.create_study(study_name="toy", storage=journal_or_url(storage), direction="minimize")
    proc = toy(tmp_path, f"hydra.sweeper.storage={storage}", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-2000:]
    assert "created to minimize, this sweep would maximize" in out
    assert "where: hydra.sweeper.study_name" in out
    assert states(storage) == []


def test_no_downgrade_check_reads_pips_report():
    """scripts/check_extra_no_downgrade.py flags an install below what is installed."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from check_extra_no_downgrade import downgrades
    finally:
        sys.path.pop(0)
    report = {
        "install": [
            {"metadata": {"name": "optuna", "version": "2.10.1"}},
            {"metadata": {"name": "SQLAlchemy", "version": "2.1.9"}},
            {"metadata": {"name": "newpkg", "version": "0.1"}},
        ]
    }
    have = {"optuna": "5.0.0", "sqlalchemy": "2.1.9"}
    assert downgrades(report, have) == [("optuna", "5.0.0", "2.10.1")]


@pytest.mark.slow
def test_the_sweep_extra_downgrades_nothing_here():
    """pip's dry run of .[sweep] in this environment (optuna 5 / SQLAlchemy 2.1 / alembic 1.20
    in CI): no installed distribution replaced by a lower version."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_extra_no_downgrade.py"), "sweep"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "downgrades nothing" in proc.stdout


def test_relative_storages_are_against_the_launch_dir(tmp_path):
    """journal:study.journal and sqlite:///optuna.db: files in the launch dir, and every job
    is told the absolute path (it may run elsewhere)."""
    for storage, path in (
        ("journal:study.journal", tmp_path / "study.journal"),
        ("sqlite:///optuna.db", tmp_path / "optuna.db"),
    ):
        proc = toy(tmp_path, f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
        assert path.is_file()
        told = [
            (s / "0" / ".hydra" / "hydra.yaml").read_text()
            for s in sweep_dirs(tmp_path)
            if (s / "0").is_dir()
        ]
        assert any(f"MRINET_OPTUNA_STORAGE: {storage.split(':')[0]}:" in t for t in told)
        assert any(str(path) in t for t in told), told


def test_sigterm_cancels_local_trials_and_marks_them_interrupted(tmp_path):
    """kill (SIGTERM) of an asynchronous local sweep: its trial processes end, the study says
    interrupted and holds their parameters queued to run first."""
    storage = f"journal:{tmp_path / 'study.journal'}"
    log = tmp_path / "sweep.log"
    sweeper = start_toy(
        tmp_path,
        log,
        "hydra/launcher=local",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "epochs=30",
        "epoch_s=1.0",
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = list((tmp_path / "sweeps").glob("*/*/times.json"))
            if len(running) == 2:
                break
            time.sleep(0.3)
        assert len(running) == 2, log.read_text()[-2000:]
        pids = [json.loads(p.read_text())["pid"] for p in running]
        sweeper.send_signal(signal.SIGTERM)
        assert sweeper.wait(60) != 0
    finally:
        if sweeper.poll() is None:
            os.killpg(sweeper.pid, signal.SIGKILL)
    time.sleep(2)
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ), f"trial process {pid} still runs"
    study = optuna.load_study(study_name="toy", storage=journal_or_url(storage))
    found = sorted(t.state.name for t in study.trials)
    assert found == ["FAIL", "FAIL", "WAITING", "WAITING"], found
    assert "run the same command to resume" in log.read_text()
