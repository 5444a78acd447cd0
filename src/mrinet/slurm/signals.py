"""The requeue signal, recorded whenever it lands and acted on only at a safe point.

Lightning's own USR1 handler does everything inside the signal handler: it closes the loggers
(training then goes on into `OSError: Writer is closed`), and saves a checkpoint at whatever
instant the signal landed (after the last validation batch, a resumed run crashed in early
stopping). Here the handler only notes the time; mrinet.slurm.requeue acts on it between two
training steps. Installed as early as the job starts (before data simulation), so a signal
that lands before training is not the default action of USR1 (terminate).
"""

from __future__ import annotations

import os
import signal
import time

_received: float | None = None
_signum: int = signal.SIGUSR1


def _record(signum, frame) -> None:
    global _received
    if _received is None:
        _received = time.time()


def install(signum: int = signal.SIGUSR1) -> None:
    """Record `signum` from now on (replaces any handler, Lightning's included)."""
    global _signum
    _signum = int(signum)
    signal.signal(_signum, _record)


def install_if_slurm() -> None:
    """Record the requeue signal in a SLURM job (no-op elsewhere)."""
    if os.environ.get("SLURM_JOB_ID"):
        install()


def received() -> float | None:
    """When the requeue signal landed (time.time()), or None."""
    return _received


def clear() -> None:
    global _received
    _received = None
