"""numpy BLAS on one thread for the phantom's small matrix products."""

from __future__ import annotations


def single_threaded_blas():
    """A context with numpy's BLAS on one thread (threadpoolctl, when installed): the phantom's
    matrix products are small, and on a busy machine a multi-threaded BLAS made them >10x
    slower (0.6 s vs 7.7 s for two k-space slices at load 9 on 2 cores)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
