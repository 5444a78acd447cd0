"""record_failed_job: a job that died without a result is `failed` in job.json and summary.csv."""

from __future__ import annotations

import csv
import json

from mrinet.run.failed_jobs import record_failed_job


def test_a_job_without_result_is_recorded_as_failed_with_the_reason(tmp_path):
    record_failed_job(tmp_path, 3, ["model.optimizer.lr=0.1"], "TIMEOUT: DUE TO TIME LIMIT\nmore")
    job = json.loads((tmp_path / "3" / "job.json").read_text())
    assert job["status"] == "failed" and job["error"] == "TIMEOUT: DUE TO TIME LIMIT"
    assert job["overrides"] == ["model.optimizer.lr=0.1"] and job["return_value"] is None
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [("3", "failed")]
    assert rows[0]["error"] == "TIMEOUT: DUE TO TIME LIMIT"
