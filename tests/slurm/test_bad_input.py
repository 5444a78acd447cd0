"""Requests no node can give, a partition that does not exist, missing tools or extras: each a
clear error naming the key and the fix, before any job is submitted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from slurm_helpers import TINY, jobs_under, run_train

pytestmark = pytest.mark.slurm

BLOCK_SUBMITIT = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "submitit" or name.startswith("hydra_plugins.hydra_submitit"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Missing())
"""


def refused(work: Path, *overrides: str, env: dict | None = None) -> str:
    proc = run_train(work, "-m", *TINY, "hydra/launcher=slurm", *overrides, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert jobs_under(work) == [], "a job was submitted"
    assert "Traceback" not in out.split("mrinet:")[-1]
    return out


@pytest.mark.parametrize(
    "overrides, key, fix",
    [
        (["hydra.launcher.partition=nosuch"], "hydra.launcher.partition", "use one of: local"),
        (["hydra.launcher.cpus_per_task=64"], "hydra.launcher.cpus_per_task", "cpus_per_task<="),
        (["hydra.launcher.mem_gb=4096"], "hydra.launcher.mem_gb", "mem_gb<="),
        # the README's GPU line on this CPU-only partition
        (["trainer=gpu"], "hydra.launcher.gpus_per_node", "use trainer=cpu"),
        (["trainer=ddp_cpu", "trainer.num_nodes=4"], "hydra.launcher.nodes", "num_nodes<=1"),
    ],
)
def test_a_request_no_node_can_give_is_refused_before_submitting(work, overrides, key, fix):
    out = refused(work, *overrides)
    assert f"where: {key}" in out and fix in out, out[-2000:]


def test_sbatch_missing_from_path_is_a_clear_error(work):
    out = refused(work, env={"PATH": os.path.dirname(sys.executable)})
    assert "needs SLURM's sbatch, sinfo, squeue, scancel on PATH" in out, out[-2000:]
    assert "hydra/launcher=local" in out


def test_launcher_without_the_sweep_extra_says_how_to_install_it(work):
    shim = work / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCK_SUBMITIT)
    root = Path(__file__).resolve().parents[2]
    out = refused(work, env={"PYTHONPATH": f"{shim}{os.pathsep}{root / 'src'}"})
    assert "needs hydra-submitit-launcher and submitit" in out, out[-2000:]
    assert "pip install 'mrinet[sweep]'" in out
