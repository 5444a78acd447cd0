"""DDP with 2 tasks through hydra/launcher=slurm: one run dir, rank 0 records, a log per rank."""

from __future__ import annotations

import json

import pytest
from slurm_helpers import TINY, only_sweep_dir, read_summary, run_train

pytestmark = pytest.mark.slurm


def test_ddp_two_tasks_one_run_dir_no_stray_resumed_folder_a_log_per_rank(work, data_dir):
    proc = run_train(
        work,
        "-m",
        *TINY,
        f"paths.data_dir={data_dir}",
        "hydra/launcher=slurm",
        "trainer=ddp_cpu",  # devices=2: 2 tasks of 1 CPU each (auto), no GPU request
        "model.steps_per_batch=1",  # grouped steps are single-process only
        "data.batch_size=512",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "per job 2 task(s) x 1 CPU(s)" in out and "0 GPU(s)" in out
    sweep = only_sweep_dir(work)
    (row,) = read_summary(sweep)
    assert row["status"] == "ok", row
    run = sweep / "0"
    assert not list((run / ".hydra").glob("resumed-*")), list((run / ".hydra").iterdir())
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run / "dti_mlp.rank1.log").read_text()
    assert "GLOBAL_RANK: 1," not in (run / "dti_mlp.log").read_text()
    assert json.loads((run / "metrics.json").read_text())["test"]["test/acc"] > 0.5
    # submitit: one stdout/stderr pair per task
    assert len(list(sweep.glob(".submitit/*/*_log.out"))) == 2
