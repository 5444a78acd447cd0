"""Sweep summaries: every multirun job records its status; the sweep dir gets summary.csv.

A Hydra callback (registered in configs/hydra/default.yaml) so it works with every sweeper and
launcher: each job writes `job.json` into its own run dir when it ends (ok or failed, on
whatever machine it ran, with its start and end), then (re)writes `<sweep dir>/summary.csv`
from all job dirs. A trial of mrinet's Optuna sweeper also leaves `trial.json` (epochs run,
last value, pruned: mrinet.callbacks.optuna_pruning), so each row has a `state`: complete,
pruned, failed or incomplete (started, never ended: running or killed). Hydra's
basic sweeper raises after a batch with a failed job and never calls `on_multirun_end`, so the
per-job rewrite is what keeps the summary complete; `on_multirun_end` writes it once more and
prints the best runs. `python -m mrinet.run.sweep SWEEP_DIR` rebuilds it by hand (e.g. after a
SLURM array finished). Only light imports here: Hydra instantiates this for every run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mrinet.errors import MrinetError, check_choice
from mrinet.io.atomic import atomic_file
from mrinet.io.trial_file import TRIAL_FILE
from mrinet.run.run_dirs import process_rank

log = logging.getLogger("mrinet.run.sweep")

JOB_FILE = "job.json"
SUMMARY_FILE = "summary.csv"
DIRECTIONS = {"max": "maximize", "min": "minimize"}


def optuna_direction(mode: str) -> str:
    """`optimized_mode` (max/min) -> Optuna's study direction (maximize/minimize)."""
    return DIRECTIONS[check_choice(mode, tuple(DIRECTIONS), "optimized_mode")]


def _is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    mode = OmegaConf.select(config, "hydra.mode")
    return mode == RunMode.MULTIRUN or str(mode) == "MULTIRUN"


def first_line(error: BaseException) -> str:
    """`TypeName: first line of the message`, of the mrinet error behind Hydra's wrappers."""
    cause, seen = error, set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, MrinetError):
            error = cause
            break
        cause = cause.__cause__ or cause.__context__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def job_record(config: DictConfig, job_return: Any) -> dict:
    """What one finished job contributes to the summary (plain types only)."""
    from hydra.core.utils import JobStatus

    ok = job_return.status == JobStatus.COMPLETED
    value = job_return._return_value  # the property re-raises a failed job's exception
    record = {
        "job": int(OmegaConf.select(config, "hydra.job.num", default=-1)),
        "overrides": list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or []),
        "status": "ok" if ok else "failed",
        "error": "" if ok else first_line(value),
        "return_value": None,
        "run_dir": str(OmegaConf.select(config, "hydra.runtime.output_dir")),
        "ended": _stamp(time.time()),
    }
    if ok and isinstance(value, (int, float)):
        record["return_value"] = float(value)
    return record


def _stamp(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect_jobs(sweep_dir: str | Path) -> list[dict]:
    """One row per job dir of the sweep (dirs with a `.hydra/` or `job.json`), by job number."""
    rows = []
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        record = _read_json(job_dir / JOB_FILE)
        if record is None and not (job_dir / ".hydra").is_dir():
            continue
        if record is None:  # started but never ended: still running, or killed
            overrides = _read_overrides(job_dir)
            record = {
                "job": int(job_dir.name) if job_dir.name.isdigit() else -1,
                "overrides": overrides,
                "status": "incomplete",
                "error": "",
                "return_value": None,
                "run_dir": str(job_dir),
            }
        metrics = _read_json(job_dir / "metrics.json") or {}
        trial = _read_json(job_dir / TRIAL_FILE) or {}
        record["optimized_metric"] = metrics.get("optimized_metric")
        value = metrics.get("optimized_value", record.get("return_value"))
        if trial.get("pruned") and trial.get("last_value") is not None:
            value = trial["last_value"]  # the value the pruner judged
        record["optimized_value"] = None if value is None else float(value)
        record["test"] = metrics.get("test", {})
        record["trial"] = trial
        record["epochs"] = trial.get("epochs", metrics.get("epochs"))
        record["state"] = {"ok": "complete", "failed": "failed"}.get(record["status"], "incomplete")
        if record["state"] == "complete" and trial.get("pruned"):
            record["state"] = "pruned"
        if not record.get("started"):
            started = job_dir / ".hydra"
            record["started"] = _stamp(started.stat().st_mtime) if started.exists() else ""
        record.setdefault("ended", "")
        rows.append(record)
    return sorted(rows, key=lambda r: (r["job"], r["run_dir"]))


def _read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        return [str(o) for o in OmegaConf.load(path)]
    except Exception:  # a half-written overrides file must not break the summary
        return []


def write_summary(sweep_dir: str | Path, metric_name: str | None = None) -> Path:
    """Write `<sweep_dir>/summary.csv` (atomically): job, status, error, overrides, metrics."""
    sweep_dir = Path(sweep_dir)
    rows = collect_jobs(sweep_dir)
    metric_name = metric_name or next(
        (r["optimized_metric"] for r in rows if r.get("optimized_metric")), "optimized"
    )
    test_keys = sorted({k for r in rows for k in r["test"]})
    varying = sweep_params(rows)
    header = [
        "job",
        "state",
        "status",
        "error",
        "params",
        metric_name,
        "epochs",
        "started",
        "ended",
        *test_keys,
        "overrides",
        "run_dir",
    ]
    path = sweep_dir / SUMMARY_FILE
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, r in enumerate(rows):
            writer.writerow(
                [
                    r["job"],
                    r["state"],
                    r["status"],
                    r["error"],
                    " ".join(varying[i]),
                    _fmt(r["optimized_value"]),
                    "" if r["epochs"] is None else int(r["epochs"]),
                    r["started"],
                    r["ended"],
                    *(_fmt(r["test"].get(k)) for k in test_keys),
                    " ".join(r["overrides"]),
                    r["run_dir"],
                ]
            )
    return path


def sweep_params(rows: list[dict]) -> list[list[str]]:
    """Per row, the overrides not shared by every job (what the sweep varied)."""
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    return [[o for o in r["overrides"] if o not in common] for r in rows]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def best_runs(rows: list[dict], mode: str = "max", n: int = 5) -> list[dict]:
    """The `n` complete jobs with the best optimized value (pruned, NaN and missing left out)."""
    ok = [
        r
        for r in rows
        if r.get("state", "complete" if r["status"] == "ok" else r["status"]) == "complete"
        and r["optimized_value"] is not None
        and not math.isnan(r["optimized_value"])
    ]
    return sorted(ok, key=lambda r: r["optimized_value"], reverse=mode == "max")[:n]


def print_best(sweep_dir: str | Path, mode: str = "max", n: int = 5) -> None:
    """A rich table of the best runs, plus the failed ones, and where to look further."""
    from rich.console import Console
    from rich.table import Table

    rows = collect_jobs(sweep_dir)
    params = {r["run_dir"]: p for r, p in zip(rows, sweep_params(rows))}
    metric = next((r["optimized_metric"] for r in rows if r.get("optimized_metric")), "metric")
    table = Table(title=f"best runs by {metric} ({mode})")
    for column in ("job", metric, "test/bal_acc", "test/acc", "params"):
        table.add_column(column)
    for r in best_runs(rows, mode, n):
        table.add_row(
            str(r["job"]),
            _fmt(r["optimized_value"]),
            _fmt(r["test"].get("test/bal_acc")),
            _fmt(r["test"].get("test/acc")),
            " ".join(params[r["run_dir"]]),
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for r in rows:
        if r["state"] in ("failed", "incomplete"):
            console.print(
                f"job {r['job']} {r['state']}: {r['error']}  ({' '.join(params[r['run_dir']])})"
            )
    n_ok = sum(r["state"] == "complete" for r in rows)
    pruned = [r for r in rows if r["state"] == "pruned"]
    if pruned:
        saved = pruning_saved_hours(pruned)
        console.print(
            f"{len(pruned)} trial(s) pruned (stopped early on the pruner's word); pruning saved "
            + ", ".join(f"~{h:.3g} {kind.upper()} hours" for kind, h in saved.items())
            + " (the epochs they did not run, at their own pace; an upper bound if early "
            "stopping would have ended them sooner)"
        )
    console.print(
        f"{n_ok}/{len(rows)} jobs complete; summary: {Path(sweep_dir) / SUMMARY_FILE}\n"
        f"compare all runs (HPARAMS tab): tensorboard --logdir {sweep_dir}"
    )


def pruning_saved_hours(rows: list[dict]) -> dict[str, float]:
    """Device hours the pruned rows did not spend: (max_epochs - epochs) x their seconds per
    epoch x devices, per accelerator kind (cpu, gpu)."""
    saved: dict[str, float] = {}
    for r in rows:
        t = r.get("trial") or {}
        epochs, max_epochs, train_s = t.get("epochs"), t.get("max_epochs"), t.get("train_s")
        if not epochs or not max_epochs or max_epochs < 0 or train_s is None:
            continue
        hours = (max_epochs - epochs) * (train_s / epochs) * int(t.get("devices") or 1) / 3600
        kind = t.get("accelerator") or "cpu"
        saved[kind] = saved.get(kind, 0.0) + max(hours, 0.0)
    return saved or {"cpu": 0.0}


_started: dict[str, float] = {}


class SweepSummary(Callback):
    """Hydra callback: job.json per job, summary.csv per sweep, best runs printed at the end."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = OmegaConf.select(config, "hydra.runtime.output_dir")
        if run_dir:
            _started[str(run_dir)] = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config) or process_rank() > 0:  # rank 0 speaks for a DDP job
            return

        try:
            record = job_record(config, job_return)
            record["started"] = _stamp(_started.pop(record["run_dir"], None))
            run_dir = Path(record["run_dir"])
            run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_file(run_dir / JOB_FILE) as tmp:
                tmp.write_text(json.dumps(record, indent=2))
            write_summary(OmegaConf.select(config, "hydra.sweep.dir") or run_dir.parent)
        except Exception as err:  # the summary must never turn a finished job into a failure
            log.warning("sweep summary not updated: %s", first_line(err))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        if not sweep_dir.is_dir():
            return
        write_summary(sweep_dir, OmegaConf.select(config, "optimized_metric"))
        print_best(sweep_dir, str(OmegaConf.select(config, "optimized_mode", default="max")))


def main(argv: list[str] | None = None) -> int:
    """`python -m mrinet.run.sweep SWEEP_DIR [max|min]`: rebuild summary.csv and print the best runs."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not Path(argv[0]).is_dir():
        print("usage: python -m mrinet.run.sweep SWEEP_DIR [max|min]", file=sys.stderr)
        return 2
    write_summary(argv[0])
    print_best(argv[0], argv[1] if len(argv) > 1 else "max")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
