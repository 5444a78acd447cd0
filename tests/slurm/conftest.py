"""The `slurm` suite: end-to-end runs on a real one-node SLURM cluster on this machine.

Start it with scripts/slurm_local.sh start (make test-slurm does, and stops it after).
Without a cluster these tests skip, unless MRINET_SLURM_REQUIRED=1 (make test-slurm, CI):
then they fail. Every test is bounded: the commands run with a timeout, and the jobs a test
submitted (found by their working dir, the test's tmp_path) are cancelled when it ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_helpers import cancel_under, cluster_up


@pytest.fixture(scope="session")
def cluster() -> None:
    if cluster_up():
        return
    message = "no SLURM cluster answers: scripts/slurm_local.sh start (or make test-slurm)"
    if os.environ.get("MRINET_SLURM_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def work(tmp_path, cluster):
    """A working dir for one test; its SLURM jobs are cancelled when the test ends."""
    yield tmp_path
    cancel_under(tmp_path)
