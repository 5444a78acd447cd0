"""One writer per cache: a lock file beside it, so jobs started together simulate once.

Atomic writes (mrinet.io.atomic) already keep a half-written cache from being read; without
a lock, every job of a sweep started on a cold cache simulated the whole cohort itself (the
first rename won, the others' work was thrown away). `cache_lock` makes the others wait and
then find the cache complete. POSIX record locks (fcntl.lockf) work on local disks and on
NFS/Lustre mounts with locking; the lock goes with the process (a killed writer frees it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def cache_lock(target: str | Path) -> Iterator[None]:
    """Hold `<target>.lock` exclusively (waiting for another holder, with a log line)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("waiting for another process writing %s", target)
            start = time.monotonic()
            fcntl.lockf(fd, fcntl.LOCK_EX)
            log.info("%s: the other writer finished after %.0f s", target, time.monotonic() - start)
        yield
    finally:
        os.close(fd)  # releases the lock
