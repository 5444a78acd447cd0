"""A dataset split into shards by a stable order: task i of n takes files i, i + n, i + 2n, ...

Used by `python -m mrinet.reconstruct --shard i/n` (one task of a SLURM array, see
mrinet.slurm.reconstruct_array). The order is the sorted file names, the same on every
machine and at every retry, so the shards are disjoint and together cover every file once:
no two tasks ever write one output, and a rerun of a task redoes only its own missing files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mrinet.errors import ConfigError


def parse_shard(spec: str) -> tuple[int, int]:
    """`"i/n"` (0 <= i < n) -> (i, n), or a ConfigError saying the form."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    index, count = (int(match.group(1)), int(match.group(2))) if match else (-1, 0)
    if not 0 <= index < count:
        raise ConfigError(
            f"shard {spec!r} is not i/n with 0 <= i < n",
            "--shard",
            "e.g. --shard 0/4 for the first of 4 shards (a SLURM array: $SLURM_ARRAY_TASK_ID/4)",
        )
    return index, count


def select_shard(files: Sequence[Path], spec: str) -> list[Path]:
    """The files of shard `spec` ("i/n"), taken from `files` in sorted-name order."""
    index, count = parse_shard(spec)
    ordered = sorted(files, key=lambda p: (Path(p).name, str(p)))
    return list(ordered[index::count])
