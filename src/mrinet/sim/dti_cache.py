"""The simulated DTI cohort as a cache: written once per simulator setting, then read as NIfTI."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from mrinet.io.integrity import (
    MANIFEST,
    cache_files,
    manifest_problems,
    remove_tree,
    write_manifest,
)
from mrinet.io.locks import cache_lock
from mrinet.sim.dti_dataset import cohort_params, simulate_dti_cohort

log = logging.getLogger(__name__)


SIMULATOR_VERSION = "dwi-1"  # bump when the simulator's output changes: invalidates caches


def synthetic_cohort_dir(cache_dir: str | Path, params: Mapping) -> Path:
    """Where the simulated cohort for these settings lives (keyed by all simulator parameters)."""
    settings = dict(params)
    subjects, seed = settings.pop("subjects", 8), settings.pop("seed", 0)
    preset = settings.pop("preset", "literature")
    full = cohort_params(preset, **settings)
    key = json.dumps(
        {
            "version": SIMULATOR_VERSION,
            "subjects": subjects,
            "seed": seed,
            "preset": preset,
            "params": full,
        },
        sort_keys=True,
    )
    return (
        Path(cache_dir)
        / f"{preset}-{subjects}subj-seed{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    )


def ensure_synthetic_cohort(cache_dir: str | Path, params: Mapping) -> Path:
    """Simulate the cohort on first use; each subject folder is written whole (temp + rename),
    so an interrupted generation resumes with the missing subjects only. One process simulates,
    others started together wait for it (mrinet.io.locks)."""
    target = synthetic_cohort_dir(cache_dir, params)
    with cache_lock(target):
        return _ensure_cohort(target, params)


# cohorts this process verified against their manifest, with the files' (name, size, mtime)
# then: a run asks up to three times (prepare_data twice, setup), and each SHA-1 pass over
# the default cohort cost ~0.7 s of start-up (docs/benchmarks.md, start-up)
_VERIFIED: dict[Path, tuple] = {}


def _stamp(target: Path) -> tuple:
    """(name, size, mtime_ns) of every file of the cohort and its manifest: any write changes it."""
    files = [*cache_files(target), target / MANIFEST] if target.is_dir() else []
    return tuple((str(p), *_size_mtime(p)) for p in files)


def _size_mtime(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _ensure_cohort(target: Path, params: Mapping) -> Path:
    settings = dict(params)
    expected = int(settings.get("subjects", 8))
    if _VERIFIED.get(target) != _stamp(target):  # verified by this process, unchanged since
        _drop_bad_subjects(target, expected)
    existing = [p for p in target.glob("sub-*") if p.is_dir()] if target.is_dir() else []
    if len(existing) >= expected and (target / MANIFEST).is_file():
        log.info("synthetic DTI cohort: using cached %s", target)
        _VERIFIED[target] = _stamp(target)
        return target
    log.info(
        "synthetic DTI cohort: simulating %d subject(s) into %s (once; cached)",
        expected - len(existing),
        target,
    )
    simulate_dti_cohort(target, **settings)
    write_manifest(target)  # sizes and checksums: a later corruption is found, not read
    _VERIFIED[target] = _stamp(target)
    return target


def _drop_bad_subjects(target: Path, expected: int) -> None:
    """Remove (with a warning naming the file) the subjects whose files no longer match the
    cohort's manifest, so they are simulated again; a whole cohort without one (another mrinet
    version's) is simulated again."""
    if not target.is_dir():
        return
    problems = manifest_problems(target)
    subjects = [p for p in target.glob("sub-*") if p.is_dir()]
    if problems is None:
        if len(subjects) >= expected:  # complete but unverifiable: another version wrote it
            log.warning(
                "synthetic DTI cohort %s has no %s (written by another mrinet version): "
                "simulating it again",
                target,
                MANIFEST,
            )
            for subject in subjects:
                remove_tree(subject)
        return  # fewer: an interrupted simulation, resumed with the missing subjects
    bad = sorted({name.split("/", 1)[0] for name in problems})
    for name, why in sorted(problems.items()):
        log.warning("synthetic DTI cohort file %s is %s: simulating its subject again",
                    target / name, why)  # fmt: skip
    for subject in bad:
        remove_tree(target / subject)
    if bad:
        (target / MANIFEST).unlink(missing_ok=True)
