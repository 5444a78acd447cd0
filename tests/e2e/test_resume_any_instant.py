"""Resume from a checkpoint saved at any instant of an epoch (issue 14, item 3).

A requeue signal landing after the epoch's last validation batch made Lightning save a
checkpoint that resumed straight to the epoch's end: early stopping (strict) found no
val/bal_acc and the resumed job crashed. No SLURM needed: the checkpoint is saved at that
instant by a callback doing what Lightning's signal handler does, then `ckpt_path=` resumes it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ARGS = [
    "experiment=dti_mlp",
    "data_size=tiny",  # the session's tiny cohort (configs/tiny/dti_tiny.yaml), simulated once
    "data.split=[0.5,0.25,0.25]",
    "data.batch_size=128",  # ~8 steps per epoch: a real mid-epoch point
    "trainer.max_epochs=4",
    "extras.num_threads=1",
    "extras.print_config=false",
    "callbacks.progress_bar.kind=none",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, data_dir, cli) -> tuple[Path, Path, dict]:
    """One uninterrupted run that also saves hpc_ckpt_1 (epoch 1, after its last validation
    batch) and hpc_ckpt_2 (epoch 2, mid-epoch): saving does not change its training.
    Returns (run dir, a pristine copy of it, its final metrics)."""
    run = tmp_path_factory.mktemp("interrupted") / "run"
    proc = cli(
        "mrinet.train",
        *ARGS,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run}",
        "+callbacks.save_hpc._target_=save_hpc_at.SaveHpcAt",
        "+callbacks.save_hpc.points=[[1,after_last_val_batch],[2,mid_epoch]]",
        cwd=run.parent,
        env={"PYTHONPATH": f"{HERE.parents[1] / 'src'}{os.pathsep}{HERE}"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (run / "hpc_ckpt_1.ckpt").is_file() and (run / "hpc_ckpt_2.ckpt").is_file()
    pristine = run.parent / "pristine"
    shutil.copytree(run, pristine)
    return run, pristine, json.loads((run / "metrics.json").read_text())


@pytest.mark.parametrize(
    "ckpt",
    [
        "hpc_ckpt_1.ckpt",  # after the last validation batch: the case that crashed
        pytest.param("hpc_ckpt_2.ckpt", marks=pytest.mark.e2e),  # mid-epoch
    ],
)
def test_resume_from_hpc_checkpoint_ends_with_the_uninterrupted_metrics(
    interrupted_run, ckpt, tmp_path, data_dir, cli
):
    # the requeued job resumes in its own run dir, as it was when the checkpoint was saved
    run, pristine, expected = interrupted_run
    shutil.rmtree(run)
    shutil.copytree(pristine, run)
    # what the run wrote after the checkpoint was saved: gone when the signal landed
    (run / "metrics.json").unlink()
    shutil.rmtree(run / "checkpoints")
    shutil.copytree(run / f"{ckpt}.checkpoints", run / "checkpoints")
    proc = cli(
        "mrinet.train", *ARGS, f"paths.data_dir={data_dir}", f"ckpt_path={run / ckpt}", cwd=tmp_path
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Early stopping conditioned on metric" not in out
    got = json.loads((run / "metrics.json").read_text())
    assert got["test"].keys() == expected["test"].keys()
    for key, value in expected["test"].items():
        assert got["test"][key] == pytest.approx(value, abs=1e-6), key
    for key in ("val/bal_acc", "val/loss"):
        assert got["final"][key] == pytest.approx(expected["final"][key], abs=1e-6), key
    assert got["ckpt_path"] == expected["ckpt_path"]
