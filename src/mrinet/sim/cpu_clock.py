"""CPU seconds per stage of a simulation (time.process_time): unlike wall time, they hold on a
loaded machine, so the first-run benchmark can compare stages across runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class CpuClock:
    """Accumulates this process's CPU seconds per named stage (`with clock("fit"): ...`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            spent = time.process_time() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

    def rounded(self, digits: int = 3) -> dict[str, float]:
        """The stages' seconds, rounded (for JSON records)."""
        return {k: round(v, digits) for k, v in self.seconds.items()}


@contextmanager
def _no_clock(stage: str) -> Iterator[None]:
    yield


def clock_or_none(clock: CpuClock | None):
    """`clock`, or a stand-in that times nothing."""
    return _no_clock if clock is None else clock
