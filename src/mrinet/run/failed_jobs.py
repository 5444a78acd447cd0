"""A sweep job that never reported (killed, timed out, cancelled) recorded as failed.

The SLURM launcher (src/hydra_plugins/mrinet_slurm) calls this when a job ends without a
result, so summary.csv says failed with SLURM's reason instead of incomplete. It lives in
`run` next to the summary it updates, so `slurm` (cluster plumbing) never imports `run`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mrinet.io.atomic import atomic_file
from mrinet.run.sweep import JOB_FILE, write_summary

log = logging.getLogger("mrinet.slurm")


def record_failed_job(sweep_dir: Path, num: int, overrides: list[str], error: str) -> None:
    """job.json for a job that never reported (it died, timed out, was cancelled), then the
    sweep's summary.csv again: the summary says failed with SLURM's reason, not incomplete."""
    run_dir = Path(sweep_dir) / str(num)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "job": num,
        "overrides": list(overrides),
        "status": "failed",
        "error": error.splitlines()[0][:500],
        "return_value": None,
        "run_dir": str(run_dir),
    }
    with atomic_file(run_dir / JOB_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    try:
        write_summary(sweep_dir)
    except OSError as err:
        log.warning("summary.csv not updated: %s", err)
