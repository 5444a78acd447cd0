"""Write-then-rename, so a killed writer never leaves a file a later run would take as complete."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mrinet.errors import disk_full_error, is_disk_full


def _tmp_sibling(path: Path) -> Path:
    # same directory => os.replace is an atomic rename on one filesystem
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on error delete it."""
    with _temporary_sibling(path, lambda tmp: None, Path.unlink) as tmp:
        yield tmp
        os.replace(tmp, path)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; rename it to `path` only once it is complete."""
    with _temporary_sibling(path, Path.mkdir, shutil.rmtree) as tmp:
        yield tmp
        if Path(path).exists():  # another process finished first: keep theirs, drop ours
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, path)


@contextmanager
def _temporary_sibling(
    path: str | Path, create: Callable[[Path], object], remove: Callable[[Path], object]
) -> Iterator[Path]:
    """What both writers share: a temporary beside `path` (made by `create`), a full disk while
    writing or renaming as one DiskFullError naming `path`, and the temporary removed (by
    `remove`) unless it was renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        create(tmp)
        yield tmp
    except (OSError, RuntimeError) as err:  # HDF5 reports a full disk as a RuntimeError
        full = _full(err, path, tmp)
        if full is None:
            raise
        raise full from err
    finally:
        if tmp.exists():
            remove(tmp)


def _full(err: Exception, path: Path, tmp: Path):
    """A full device or quota: one DiskFullError naming the final file (the temporary is
    removed, the previous file keeps its name); None for other errors."""
    if not is_disk_full(err):
        return None
    written = _size(tmp)
    return disk_full_error(err, path, written=written or None)


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(\..+)?$")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries in `folder` left by a killed writer (its process is gone); returns them.

    Only names made by atomic_file/atomic_dir whose writer pid is no longer running on this
    machine are removed, so a writer still at work keeps its temporary.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TMP_NAME.match(entry.name)
        if match is None or _pid_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
