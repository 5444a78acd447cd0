"""mrinet.reconstruct over a dataset split into shards, as a SLURM job array: the same files as
one process, no two tasks writing one file, and a rerun redoes only what is missing."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from slurm_helpers import env_for_jobs

pytestmark = pytest.mark.slurm

RECON = ["--method", "sense", "--acceleration", "4"]


def python(*args: str, cwd, timeout: int = 400, env: dict | None = None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env_for_jobs(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def same_h5(a, b) -> None:
    """The same datasets and attributes, bit for bit."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert sorted(names_a) == sorted(names_b)
        for key in names_a:
            if isinstance(fa[key], h5py.Dataset):
                np.testing.assert_array_equal(fb[key][()], fa[key][()], err_msg=f"{a}:{key}")
        assert {k: str(v) for k, v in fa.attrs.items()} == {k: str(v) for k, v in fb.attrs.items()}


def test_sharded_array_writes_what_one_process_writes_and_resumes(work):
    from mrinet.sim.kspace_dataset import simulate_kspace_dataset

    kspace = work / "kspace"
    simulate_kspace_dataset(kspace, volumes=5, slices=2, coils=4, progress=False)
    single = python(
        "-m",
        "mrinet.reconstruct",
        "--kspace",
        str(kspace),
        "--out",
        str(work / "one"),
        *RECON,
        "--no-progress",
        cwd=work,
        # one thread, as each 1-CPU array task has: float sums in the same order, equal bits
        env={"OMP_NUM_THREADS": "1"},
    )
    assert single.returncode == 0, single.stderr[-2000:]

    array = [
        "-m",
        "mrinet.slurm.reconstruct_array",
        "--shards",
        "3",
        "--cpus-per-task",
        "1",
        "--",
        "--kspace",
        str(kspace),
        "--out",
        str(work / "array"),
        *RECON,
    ]
    first = python(*array, cwd=work)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert "3/3 shards done" in first.stdout
    one = sorted(p.relative_to(work / "one") for p in (work / "one").rglob("*.h5"))
    got = sorted(
        p.relative_to(work / "array")
        for p in (work / "array").rglob("*.h5")
        if ".submitit" not in p.parts
    )
    assert got == one and len(one) == 10  # 5 volumes x (reference, sense_R4)
    for rel in one:
        same_h5(work / "one" / rel, work / "array" / rel)
    # shards are disjoint: each task's log names only its own volumes (files 0,3 / 1,4 / 2)
    logs = sorted((work / "array" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 3

    # an interrupted array: two outputs lost; the same command computes only those again
    lost = [
        work / "array" / "sense_R4" / "file_brain_AXT2_sim_0001.h5",
        work / "array" / "reference" / "file_brain_AXT2_sim_0004.h5",
    ]
    untouched = work / "array" / "sense_R4" / "file_brain_AXT2_sim_0000.h5"
    before = untouched.stat().st_mtime_ns
    for path in lost:
        path.unlink()
    again = python(*array, cwd=work)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    for rel in one:
        same_h5(work / "one" / rel, work / "array" / rel)
    assert untouched.stat().st_mtime_ns == before


def test_a_bad_shard_spec_is_a_clear_error(work):
    proc = python(
        "-m",
        "mrinet.reconstruct",
        "--kspace",
        str(work),
        "--out",
        str(work / "o"),
        "--shard",
        "3/3",
        cwd=work,
    )
    assert proc.returncode != 0
    assert "shard '3/3' is not i/n with 0 <= i < n" in proc.stderr + proc.stdout
