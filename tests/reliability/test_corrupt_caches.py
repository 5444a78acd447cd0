"""Corrupt, truncated and foreign caches are found, named in a warning and rebuilt, never read.

Real files: the tiny simulated cohort, its voxel cache and a tiny simulated k-space cache,
damaged as a disk, a cut-short copy or another mrinet version would leave them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY_COHORT as TINY
from tests.helpers import tiny_cohort_module as module

RECON = {"simulation": {"volumes": 2, "slices": 1, "coils": 2, "size": 32, "progress": False}}


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Path:
    """The tiny cohort and its voxel cache, simulated once; each test damages a copy."""
    cache_dir = tmp_path_factory.mktemp("cohort-master")
    module(cache_dir).load_voxels()
    return cache_dir


@pytest.fixture
def cohort(master, tmp_path) -> tuple[Path, Path]:
    """(cache_dir, cohort folder) of a fresh copy of the master cohort."""
    from mrinet.sim.dti_cache import synthetic_cohort_dir

    cache_dir = tmp_path / "cache"
    shutil.copytree(master, cache_dir)
    return cache_dir, synthetic_cohort_dir(cache_dir, TINY)


def truncate(path: Path, size: int = 1024) -> None:
    path.write_bytes(path.read_bytes()[:size])


def flip_bit(path: Path, where: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x08
    path.write_bytes(bytes(data))


def warned(caplog, *needles) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    for needle in needles:
        assert str(needle) in text, (needle, text)


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped", "another_version", "no_arrays"])
def test_a_bad_voxel_cache_is_warned_about_and_rebuilt(cohort, caplog, damage):
    cache_dir, root = cohort
    (cache,) = root.glob(".voxels-*.npz")
    good = module(cache_dir).load_voxels()
    if damage == "truncated":
        truncate(cache)
    elif damage == "bit_flipped":
        flip_bit(cache)
    else:  # a layout of another version: no format tag, or the tag but other arrays
        with np.load(cache) as saved:
            arrays = {k: saved[k] for k in saved.files if k != "cache_format"}
        if damage == "no_arrays":
            arrays = {"cache_format": saved_format(), "features": arrays["features"]}
        with open(cache, "wb") as handle:
            np.savez(handle, **arrays)
    caplog.set_level(logging.WARNING)
    again = module(cache_dir).load_voxels()
    warned(caplog, cache, "rebuilding")
    np.testing.assert_array_equal(again.features, good.features)
    np.testing.assert_array_equal(again.labels, good.labels)
    caplog.clear()
    module(cache_dir).load_voxels()  # the rebuilt cache is read without a word
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def saved_format():
    from mrinet.data.tissue.voxel_cache import VOXEL_CACHE_FORMAT

    return np.asarray(VOXEL_CACHE_FORMAT)


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped", "deleted"])
def test_a_damaged_cohort_file_is_named_and_its_subject_simulated_again(cohort, caplog, damage):
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    cache_dir, root = cohort
    victim = root / "sub-001" / "FA.nii.gz"
    original = victim.read_bytes()
    untouched = (root / "sub-000" / "FA.nii.gz").stat().st_mtime_ns
    {"truncated": truncate, "bit_flipped": flip_bit, "deleted": Path.unlink}[damage](victim)
    caplog.set_level(logging.WARNING)
    assert ensure_synthetic_cohort(cache_dir, TINY) == root
    warned(caplog, victim, "simulating its subject again")
    assert victim.read_bytes() == original  # the same subject, drawn again from its seed
    assert (root / "sub-000" / "FA.nii.gz").stat().st_mtime_ns == untouched  # only it redone
    caplog.clear()
    ensure_synthetic_cohort(cache_dir, TINY)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_cohort_of_another_version_without_manifest_is_simulated_again(cohort, caplog):
    from mrinet.io.integrity import MANIFEST
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    cache_dir, root = cohort
    (root / MANIFEST).unlink()
    caplog.set_level(logging.WARNING)
    ensure_synthetic_cohort(cache_dir, TINY)
    warned(caplog, root, "another mrinet version")
    assert (root / MANIFEST).is_file() and len(list(root.glob("sub-*"))) == 2


def test_a_bad_recon_cache_is_named_and_rebuilt(tmp_path, caplog):
    from mrinet.io.integrity import MANIFEST
    from mrinet.sim.recon_cache import ensure_synthetic_recon, synthetic_recon_dir

    ensure_synthetic_recon(tmp_path, RECON)
    target = synthetic_recon_dir(tmp_path, RECON)
    files = sorted((target / "kspace").glob("*.h5"))
    original = files[0].read_bytes()
    flip_bit(files[0], 0.5)
    caplog.set_level(logging.WARNING)
    ensure_synthetic_recon(tmp_path, RECON)
    warned(caplog, files[0], "checksum")
    assert files[0].read_bytes() == original
    (target / MANIFEST).unlink()  # a cache of a version that wrote none
    caplog.clear()
    ensure_synthetic_recon(tmp_path, RECON)
    warned(caplog, target, "no manifest")
    assert (target / MANIFEST).is_file() and not list(tmp_path.glob(".*.tmp-*"))


FILL = """
import sys
sys.path.insert(0, {src!r})
from tests.helpers import tiny_cohort_module as module
from pathlib import Path
v = module(Path({cache_dir!r})).load_voxels()
print(v.features.shape[0], float(v.features.sum()))
"""


def test_two_processes_on_one_corrupt_cache_give_one_valid_cache(cohort):
    """Both find the voxel cache corrupt: the lock lets one rebuild it, the other then reads
    the rebuilt one; both get the same voxels and one valid cache is left, no temporaries."""
    cache_dir, root = cohort
    (cache,) = root.glob(".voxels-*.npz")
    truncate(cache)
    repo = Path(__file__).resolve().parents[2]
    code = FILL.format(src=str(repo / "src"), cache_dir=str(cache_dir))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]
    (rebuilt,) = root.glob(".voxels-*.npz")
    from mrinet.io.integrity import read_npz_cache

    assert read_npz_cache(rebuilt, str(saved_format())) is not None
    assert not list(root.glob(".*.tmp-*"))
