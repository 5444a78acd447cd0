"""Progress for long batch jobs (simulation, reconstruction): a rich bar, or nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate `items` with a rich progress bar (plain lines when not on a terminal) if enabled."""
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, total=total, description=description)
