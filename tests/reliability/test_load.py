"""Load: a 1e7-voxel table is read and split within a bounded memory (peak RSS measured)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

MEASURE = """
import resource, sys
from mrinet.data.tissue.voxel_module import DTIDataModule
dm = DTIDataModule(source="table", table_path=sys.argv[1])
dm.setup("fit")
n = sum(len(v["y"]) for v in dm.data.values())
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_voxel_table_script_writes_what_the_table_reader_reads(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_voxel_table import main
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from mrinet.io.tables import read_voxel_table

    for suffix in (".parquet", ".csv"):
        path = main(["--out", str(tmp_path / f"v{suffix}"), "--rows", "3000", "--subjects", "7"])
        x, labels, subjects = read_voxel_table(
            path, ["T1w", "FA", "MD", "AD", "RD"], "label", "subject"
        )
        assert x.shape == (3000, 5) and x.dtype == np.float32 and np.isfinite(x).all()
        assert set(np.unique(labels)) == {1, 2, 3} and len(subjects.categories) == 7
        assert 0.0 <= x[:, 1].min() and x[:, 1].max() <= 1.0


@pytest.mark.slow  # ~30 s: writes and reads a 1e7-row table
def test_ten_million_voxel_table_loads_within_two_gib(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    path = tmp_path / "voxels.parquet"
    subprocess.run(
        [sys.executable, "scripts/make_voxel_table.py", "--out", str(path), "--rows", "10000000"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, peak = map(int, proc.stdout.split()[-2:])
    assert rows == 10_000_000
    assert peak < 2 * 2**30, f"peak RSS {peak / 2**30:.2f} GiB"  # measured ~1.4 GiB
