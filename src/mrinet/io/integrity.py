"""Caches that are checked before use: a corrupt, truncated or foreign one is rebuilt, never read.

mrinet's caches (the voxel .npz beside a cohort, the simulated cohort, the simulated
reconstructions) are written atomically, but a disk can still corrupt them later, a copy can
be cut short, and another mrinet version may have laid them out differently. Each carries a
record of what it should be: an .npz its format tag plus the zip's own CRC-32 of every array
(checked by reading them all), a folder a manifest of every file's size and SHA-1
(`.mrinet-manifest.json`). A cache that does not match is reported with a warning naming the
file and rebuilt. Plain arrays only (allow_pickle is never set): a cache is data, never code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mrinet import __version__
from mrinet.io.atomic import atomic_file

log = logging.getLogger(__name__)

MANIFEST = ".mrinet-manifest.json"
MANIFEST_FORMAT = 1


def read_npz_cache(
    path: str | Path, fmt: str, required: Iterable[str] = ()
) -> dict[str, np.ndarray] | None:
    """All arrays of the .npz cache `path` (read whole, so the zip's CRC-32 checks each), or
    None when it is missing; a corrupt or foreign one is reported, deleted and None returned."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        return _discard(path, f"is corrupt ({type(err).__name__}: {str(err)[:120]})")
    found = str(arrays.get("cache_format", "none"))
    if found != fmt:
        return _discard(path, f"was written by another mrinet version (format {found}, not {fmt})")
    missing = [name for name in required if name not in arrays]
    if missing:
        return _discard(path, f"lacks the arrays {missing}")
    return arrays


def _discard(path: Path, why: str) -> None:
    log.warning("cache %s %s: rebuilding it", path, why)
    path.unlink(missing_ok=True)
    return None


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_files(folder: Path) -> list[Path]:
    """The files a folder cache holds (hidden files: locks, temporaries, the manifest: not)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def write_manifest(folder: str | Path, files: Iterable[Path] | None = None) -> Path:
    """Record size and SHA-1 of every file of `folder` (atomically, beside them)."""
    folder = Path(folder)
    entries = {
        str(p.relative_to(folder)): [p.stat().st_size, file_sha1(p)]
        for p in (cache_files(folder) if files is None else files)
    }
    record = {"format": MANIFEST_FORMAT, "mrinet": __version__, "files": entries}
    with atomic_file(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return folder / MANIFEST


def manifest_problems(folder: str | Path) -> dict[str, str] | None:
    """What does not match the folder's manifest ({relative path: why}; {} = all good), or
    None when there is no readable manifest of this format (another mrinet version's cache)."""
    folder = Path(folder)
    try:
        record = json.loads((folder / MANIFEST).read_text())
        entries = dict(record["files"]) if record.get("format") == MANIFEST_FORMAT else None
        if entries is not None:  # {relative path: [size, sha1]}, else not ours
            entries = {str(k): (int(v[0]), str(v[1])) for k, v in entries.items() if len(v) == 2}
            if len(entries) != len(record["files"]):
                entries = None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        entries = None
    if entries is None:
        return None
    problems = {}
    for name, (size, sha1) in entries.items():
        path = folder / name
        if not path.is_file():
            problems[name] = "missing"
        elif path.stat().st_size != size:
            problems[name] = f"{path.stat().st_size} bytes, {size} written (truncated?)"
        elif file_sha1(path) != sha1:
            problems[name] = "checksum differs from the one written (corrupt)"
    return problems


def remove_tree(path: Path) -> None:
    """Delete a folder (or file) by renaming it aside first, so no reader ever sees half of it."""
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    os.replace(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
