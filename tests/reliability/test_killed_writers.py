"""kill -9 a dataset/reconstruction writer mid-way: nothing half-written under a final name,
and a rerun finishes the rest without touching what was finished."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "writer never reached the kill point"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


def snapshot(paths) -> dict[Path, tuple[int, str]]:
    """mtime (ns) and sha1 of every file under the given files/folders."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {f: (f.stat().st_mtime_ns, hashlib.sha1(f.read_bytes()).hexdigest()) for f in files}


def run_to_end(args: list[str], cwd: Path) -> None:
    proc = start(args, cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow  # real subprocesses killed and rerun (~12-25 s)
def test_killed_dti_cohort_writer_leaves_only_whole_subjects_and_resumes(tmp_path):
    from mrinet.data.tissue.subjects import read_subject
    from mrinet.sim.dti_dataset import SUBJECT_FILES

    out = tmp_path / "cohort"
    args = [
        "scripts/make_dti_dataset.py",
        "--out",
        str(out),
        "--subjects",
        "5",
        "--shape",
        "36",
        "44",
        "34",
        "--voxel-mm",
        "4",
    ]
    proc = start(args, ROOT)
    kill_when(
        proc,
        lambda: (
            out.is_dir()
            and len(list(out.glob("sub-*"))) >= 1
            and any((t / "data.nii.gz").exists() for t in out.glob(".sub-*.tmp-*"))
        ),
    )
    finished = sorted(out.glob("sub-*"))
    assert 1 <= len(finished) < 5 and temporaries(out)  # killed mid-subject
    for folder in finished:  # a visible subject is a whole subject
        assert sorted(p.name for p in folder.iterdir()) == sorted(SUBJECT_FILES)
        read_subject(folder, ["T1w", "FA", "MD", "AD", "RD"])
    before = snapshot(finished)
    run_to_end(args, ROOT)
    assert [p.name for p in sorted(out.glob("sub-*"))] == [f"sub-{i:03d}" for i in range(5)]
    assert snapshot(finished) == before  # finished subjects untouched
    assert not temporaries(out)  # the killed run's temporary folder is cleaned up


@pytest.mark.slow  # real subprocesses killed and rerun (~12-25 s)
def test_killed_kspace_writer_leaves_only_whole_files_and_resumes(tmp_path):
    from mrinet.io.fastmri import read_kspace_volume

    out = tmp_path / "kspace"
    args = [
        "scripts/make_kspace_dataset.py",
        "--out",
        str(out),
        "--volumes",
        "4",
        "--slices",
        "3",
        "--coils",
        "8",
        "--size",
        "320",
        "--no-progress",
    ]
    proc = start(args, ROOT)
    kill_when(proc, lambda: len(list(out.glob("*.h5"))) >= 1 and bool(temporaries(out)))
    finished = sorted(out.glob("*.h5"))
    assert 1 <= len(finished) < 4
    for path in finished:
        assert read_kspace_volume(path).kspace.shape == (3, 8, 320, 320)
    before = snapshot(finished)
    run_to_end(args, ROOT)
    assert len(list(out.glob("*.h5"))) == 4 and snapshot(finished) == before
    assert not temporaries(out)


@pytest.fixture(scope="module")
def small_kspace(tmp_path_factory) -> Path:
    from mrinet.sim.kspace_dataset import simulate_kspace_dataset

    out = tmp_path_factory.mktemp("k") / "kspace"
    simulate_kspace_dataset(out, volumes=4, slices=2, coils=4, size=320, progress=False)
    return out


@pytest.mark.slow  # real subprocesses killed and rerun (~12-25 s)
def test_killed_reconstruction_leaves_only_whole_files_and_resumes(small_kspace, tmp_path):
    from mrinet.io.fastmri import read_reconstruction

    out = tmp_path / "recon"
    args = ["-m", "mrinet.reconstruct", "--kspace", str(small_kspace), "--out", str(out)]
    args += ["--method", "sense", "--iterations", "3", "--no-progress"]
    proc = start(args, ROOT)
    kill_when(proc, lambda: len(list(out.glob("sense_R4/*.h5"))) >= 1)
    finished = sorted(out.glob("*/*.h5"))
    for path in finished:
        read_reconstruction(path)
    before = snapshot(finished)
    run_to_end(args, ROOT)
    for tag in ("reference", "sense_R4"):
        assert len(list(out.glob(f"{tag}/*.h5"))) == 4
    assert snapshot(finished) == before


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    from mrinet.io.atomic import atomic_dir, remove_stale_temporaries

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    stale_dir = tmp_path / f".sub-001.tmp-{dead_pid}-0123abcd"
    stale_file = tmp_path / f".FA.nii.gz.tmp-{dead_pid}-89abcdef.nii.gz"
    stale_dir.mkdir()
    (stale_dir / "data.nii.gz").write_bytes(b"half")
    stale_file.write_bytes(b"half")
    keep = tmp_path / "sub-000"
    keep.mkdir()
    with atomic_dir(tmp_path / "sub-002") as live:
        removed = remove_stale_temporaries(tmp_path)
        assert live.is_dir()  # this process is alive: its temporary stays
    assert sorted(removed) == sorted([stale_dir, stale_file])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-000", "sub-002"]
