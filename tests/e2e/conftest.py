"""Every test here is a whole run through the entry points: the `e2e` suite (`make test-e2e`,
which CI takes right after the fast suite); tests marked slow or slurm keep their own suites."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # a conftest's hook sees the whole session's items: mark only this folder's
    for item in items:
        if HERE not in Path(item.fspath).resolve().parents:
            continue
        if not any(item.get_closest_marker(m) for m in ("slow", "slurm", "e2e")):
            item.add_marker(pytest.mark.e2e)
