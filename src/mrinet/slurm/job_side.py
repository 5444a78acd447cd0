"""What the launcher adds inside each SLURM job, around Hydra's run_job (light imports only)."""

from __future__ import annotations

import atexit
import logging
import os
import sys

from hydra.core.utils import JobStatus

from mrinet.slurm import signals


def before_job() -> None:
    """Record the requeue signal from the first instant of the job (see mrinet.slurm.signals)."""
    signals.install_if_slurm()


def after_job(ret) -> None:
    """A failed Hydra job (the exception is in its JobReturn, which submitit saves as a
    success) makes the process exit 1 once submitit has written the result, so SLURM records
    the job FAILED instead of COMPLETED."""
    if ret.status == JobStatus.FAILED:
        atexit.register(_exit_failed)


def _exit_failed() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
