"""`<run dir>/trial.json`: what a trial of mrinet's Optuna sweeper did (epochs, last value,
pruned), written by the pruning callback and read back for summary.csv."""

from __future__ import annotations

import json
from pathlib import Path

from mrinet.io.atomic import atomic_file

TRIAL_FILE = "trial.json"


def write_trial_file(run_dir: str | Path, record: dict) -> None:
    """Write the trial's record atomically (a crash leaves the previous one or none)."""
    path = Path(run_dir) / TRIAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
