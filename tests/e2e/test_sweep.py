"""Sweeps through the real entry point: grid (basic sweeper), Optuna, submitit launchers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

TINY = [
    "experiment=dti_mlp",
    "data_size=tiny",  # configs/tiny/dti_tiny.yaml: the tiny cohort tests and debug=fast share
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
    "trainer.enable_model_summary=false",
    "extras.num_threads=1",  # no OpenMP oversubscription on a small shared CPU
]


def tiny(data_dir: Path, work: Path) -> list[str]:
    return [*TINY, f"paths.data_dir={data_dir}", f"paths.log_dir={work / 'logs'}"]


def only_sweep_dir(work: Path, task: str = "dti_mlp") -> Path:
    sweeps = list((work / "logs" / task / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def read_summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_grid_multirun_one_dir_per_job_and_summary_despite_a_failing_job(tmp_path, data_dir, cli):
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "trainer.max_epochs=1",
        "data.batch_size=512,0,1024",  # 0: a ConfigError in job 1
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    # Hydra's basic sweeper runs every job of the batch, then reports the failure (exit 1)
    assert proc.returncode == 1, out[-3000:]
    sweep = only_sweep_dir(tmp_path)
    rows = read_summary(sweep)
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    for row in rows:
        job_dir = Path(row["run_dir"])
        assert job_dir.parent == sweep and (job_dir / ".hydra" / "overrides.yaml").is_file()
        if "data.batch_size=0" in row["params"]:
            assert row["status"] == "failed", row
            assert row["error"].startswith("ConfigError: data.batch_size must be a positive")
            assert not (job_dir / "metrics.json").exists()
        else:
            assert row["status"] == "ok" and row["error"] == "", row
            metrics = json.loads((job_dir / "metrics.json").read_text())
            assert float(row["val/dice_macro"]) == pytest.approx(metrics["optimized_value"], 1e-5)
            assert float(row["test/bal_acc"]) == pytest.approx(
                metrics["test"]["test/bal_acc"], 1e-5
            )
            assert (job_dir / "checkpoints" / "best.ckpt").is_file()
    assert [r["params"] for r in rows] == [f"data.batch_size={b}" for b in (512, 0, 1024)]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]


@pytest.mark.e2e  # the fast suite's sweeps: the grid above, the pruned Optuna trials below
def test_optuna_sweep_records_failed_trials_and_goes_on(tmp_path, data_dir, cli):
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "hparams_search=dti_mlp_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=3",
        # per batch of n_jobs: with this seed 2 of the 3 sampled trials draw batch_size 0
        "hydra.sweeper.max_failure_rate=0.7",
        # fix the shipped search space except one dimension that can fail
        "model.optimizer.lr=3e-3",
        "model.optimizer.weight_decay=0",
        "model.net.hidden_dims=[16]",
        "model.net.dropout=0",
        "data.batch_size=choice(0,256,512)",
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "A new study created in memory with name: dti_mlp" in out
    assert "Best parameters:" in out or "Best value" in out, out[-2000:]
    rows = read_summary(only_sweep_dir(tmp_path))
    assert len(rows) == 3
    failed = [r for r in rows if r["status"] == "failed"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert failed and ok and len(failed) + len(ok) == 3
    assert all(r["params"] == "data.batch_size=0" for r in failed)
    assert all("ConfigError" in r["error"] for r in failed)
    assert all(0.0 < float(r["val/dice_macro"]) <= 1.0 for r in ok)
    # the best-runs table is printed at the end
    assert "best runs by val/dice_macro (max)" in proc.stdout


def compose_train(*overrides: str):
    """The composed train config with its hydra node (as the entry point would see it)."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(Path(config_dir()).resolve()), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("mode, direction", [("max", "maximize"), ("min", "minimize")])
def test_optuna_config_direction_follows_optimized_mode(mode, direction):
    cfg = compose_train(
        "experiment=dti_mlp", "hparams_search=dti_mlp_optuna", f"optimized_mode={mode}"
    )
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == direction
    assert sweeper.storage is None and sweeper.n_jobs == 4 and sweeper.max_failure_rate == 0.5
    assert sweeper._target_.endswith("mrinet_optuna.optuna_sweeper.MrinetOptunaSweeper")
    assert sweeper.sampler == "tpe" and sweeper.pruner == "none"
    assert sweeper.seed == cfg.seed == 12345
    assert "model.net.hidden_dims" in sweeper.params and "model.optimizer.lr" in sweeper.params


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_job(tmp_path, data_dir, cli):
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "hydra/launcher=local",
        "trainer.max_epochs=1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sweep = only_sweep_dir(tmp_path)
    assert (sweep / "0" / "metrics.json").is_file()
    assert list((sweep / ".submitit").glob("*/*_log.out")), "submitit wrote no job logs"
    (row,) = read_summary(sweep)
    assert row["status"] == "ok" and float(row["test/acc"]) > 0.5


def test_slurm_launcher_writes_a_ddp_sbatch_script_with_requeue(tmp_path):
    """The slurm launcher's settings, through submitit's own sbatch writer (no cluster here)."""
    pytest.importorskip("submitit")
    from omegaconf import OmegaConf

    cfg = compose_train(
        "experiment=dti_mlp",
        "trainer=slurm",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4
    assert launcher["nodes"] == 2
    assert launcher["cpus_per_task"] == launcher["mem_gb"] == "auto"
    # auto resources as the launcher sizes them from sinfo, here for 8-GPU nodes of 64 CPUs
    from mrinet.slurm.partition import Partition, fit_resources

    launcher = fit_resources(launcher, Partition("gpu", 4, 64, 512.0, 8, True))
    assert launcher["cpus_per_task"] == 8 and launcher["mem_gb"] == 64
    plugin = cfg.trainer.plugins[0]
    assert plugin._target_.endswith("SLURMEnvironment") and plugin.auto_requeue
    # submitit's sbatch writer, with the launcher's keys renamed as submitit's executors do
    from submitit.slurm.slurm import _make_sbatch_string

    rename = {"timeout_min": "time", "mem_gb": "mem", "tasks_per_node": "ntasks_per_node"}
    rename["name"] = "job_name"
    params = {rename.get(k, k): v for k, v in launcher.items()}
    params["mem"] = f"{params['mem']}GB"
    for key in ("_target_", "submitit_folder", "max_num_timeout", "array_parallelism"):
        params.pop(key)
    params = {k: v for k, v in params.items() if v is not None}
    script = _make_sbatch_string(command="python -m mrinet.train", folder=tmp_path, **params)
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --signal=USR1@120",
        "#SBATCH --requeue",
    ):
        assert line in script, (line, script)
    assert "USR2" not in script  # Lightning's USR1 replaces submitit's own signal


@pytest.mark.e2e  # two sweeps on a SQLite study (tests/sweep resumes a toy study)
def test_persistent_optuna_study_resumes_up_to_n_trials(tmp_path, data_dir, cli):
    """The README's persistent-study line (SQLite storage, needs the [sweep] pins): run again,
    the study continues where it stopped and n_trials counts the whole study."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = [
        "-m",
        *tiny(data_dir, tmp_path),
        "trainer.max_epochs=1",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=dti_mlp",
        "hydra.sweeper.n_jobs=1",
    ]
    first = cli("mrinet.train", *common, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    again = cli("mrinet.train", *common, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming study 'dti_mlp': 2 trial(s) done, 0 failed, 0 interrupted" in out
    study = optuna.load_study(study_name="dti_mlp", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * 3, states
    # the second sweep's one job is numbered after the study's first two
    (second_sweep,) = sorted((tmp_path / "logs" / "dti_mlp" / "multiruns").iterdir())[1:]
    assert [p.name for p in second_sweep.iterdir() if p.name.isdigit()] == ["2"]


def test_slurm_launcher_asks_no_gpu_for_a_cpu_trainer():
    """The README's CPU line: gpus_per_node follows the trainer's accelerator, not its devices."""
    from omegaconf import OmegaConf

    cfg = compose_train("experiment=dti_mlp", "trainer=ddp_cpu", "hydra/launcher=slurm")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["tasks_per_node"] == 2 and launcher["gpus_per_node"] == 0


def test_pruned_trial_stops_early_keeps_its_checkpoints_and_says_pruned(tmp_path, data_dir, cli):
    """The Lightning side of pruning: a tiny-model trial whose val/dice_macro is worse than the
    first trial's at the same epoch stops there (median pruner), PRUNED in the journal study,
    `pruned` in summary.csv with the epochs it ran, its checkpoints kept."""
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "study.journal"
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "trainer.max_epochs=4",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage=journal:{journal}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=1",  # the grid's order: lr 3e-3 first, then 1e-7 (learns nothing)
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_options.n_startup_trials=1",
        "model.optimizer.lr=choice(3e-3,1e-7)",
        "model.optimizer.weight_decay=0",
        "model.net.hidden_dims=[16]",
        "model.net.dropout=0",
        "data.batch_size=512",
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    study = optuna.load_study(
        study_name="dti_mlp", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    first, second = study.trials
    assert first.state.name == "COMPLETE" and first.params["model.optimizer.lr"] == 3e-3
    assert sorted(first.intermediate_values) == [0, 1, 2, 3]  # one report per validation epoch
    assert second.state.name == "PRUNED", second
    assert second.last_step < 3
    rows = read_summary(only_sweep_dir(tmp_path))
    assert [r["state"] for r in rows] == ["complete", "pruned"]
    assert rows[0]["epochs"] == "4" and int(rows[1]["epochs"]) == second.last_step + 1
    assert float(rows[1]["val/dice_macro"]) == pytest.approx(second.value, rel=1e-5)
    pruned_dir = Path(rows[1]["run_dir"])
    assert (pruned_dir / "checkpoints" / "last.ckpt").is_file()
    assert (pruned_dir / "checkpoints" / "best.ckpt").is_file()
    assert "1 trial(s) pruned" in proc.stdout


@pytest.mark.slow
def test_pruning_under_ddp_stops_every_rank_at_the_same_epoch(tmp_path, data_dir, cli):
    """trainer=ddp_cpu (2 ranks): rank 0 alone reports, its verdict reaches rank 1, both stop
    (the job ends instead of hanging in the next epoch's collectives)."""
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "study.journal"
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "trainer=ddp_cpu",
        "trainer.max_epochs=6",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage=journal:{journal}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=1",  # lr 3e-3 first, then 1e-7
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.pruner_options.n_startup_trials=1",
        "model.optimizer.lr=choice(3e-3,1e-7)",
        "model.optimizer.weight_decay=0",
        "model.net.hidden_dims=[16]",
        "model.net.dropout=0",
        "data.batch_size=512",
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    storage = JournalStorage(JournalFileBackend(str(journal)))
    first, second = optuna.load_study(study_name="dti_mlp", storage=storage).trials
    assert first.state.name == "COMPLETE" and second.state.name == "PRUNED"
    # one report per epoch (rank 0 only: a second rank would not add steps, but its writes
    # would show as duplicate journal entries)
    import json as _json

    steps = [
        (op["trial_id"], op["step"])
        for op in map(_json.loads, journal.read_text().splitlines())
        if "intermediate_value" in op
    ]
    assert len(steps) == len(set(steps)) == 6 + len(second.intermediate_values)
    rows = read_summary(only_sweep_dir(tmp_path))
    assert [r["state"] for r in rows] == ["complete", "pruned"]
    assert int(rows[1]["epochs"]) == second.last_step + 1 < 6


@pytest.mark.slow
def test_pruning_on_a_metric_never_logged_in_validation_stops_the_sweep(tmp_path, data_dir, cli):
    """A val/ name a model that declares nothing does not log (mrinet's own models are refused
    before any trial: tests/sweep/test_validation_metrics.py): a warning that the check was
    skipped, the first trial says which ones it logs, and the sweep starts no other trial."""
    tests = next(p for p in Path(__file__).resolve().parents if p.name == "tests")
    sweep_tests = tests / "sweep"  # undeclared_model.py
    proc = cli(
        "mrinet.train",
        "-m",
        *tiny(data_dir, tmp_path),
        "model._target_=undeclared_model.UndeclaredClassifier",
        "trainer.max_epochs=2",
        "hparams_search=dti_mlp_optuna",
        f"hydra.sweeper.storage=journal:{tmp_path / 'study.journal'}",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.pruner=median",
        "optimized_metric=val/nosuch",
        "callbacks.early_stopping.monitor=val/loss",
        "callbacks.model_checkpoint.monitor=val/loss",
        "callbacks.model_checkpoint.mode=min",
        cwd=tmp_path,
        env={
            "PYTHONPATH": os.pathsep.join([str(sweep_tests.parents[1] / "src"), str(sweep_tests)])
        },
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "declares no validation_metrics(class_names)" in out, out[-3000:]
    assert "optimized_metric 'val/nosuch' is not logged during validation" in out
    assert "where: optimized_metric" in out and "val/dice_macro" in out
    rows = read_summary(only_sweep_dir(tmp_path))
    assert len(rows) == 1 and rows[0]["state"] == "failed"
