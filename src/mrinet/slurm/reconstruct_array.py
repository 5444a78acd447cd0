"""Reconstruct a k-space dataset at cluster scale: one SLURM array task per shard.

The command is `mrinet-slurm-reconstruct` (mrinet.cli.slurm_reconstruct). Task i runs
`mrinet.recon.reconstruct_dataset(..., shard="i/N")` (mrinet.recon.shards: disjoint shares by
sorted file name), so the outputs are the files one process would write, no two tasks write
one file, and every output is written atomically. Run the same command again after a
failure, a time limit or a cancelled array: outputs already there are kept, only the missing
ones are computed. `run_array` waits for the array (cancelling it if interrupted) and returns
1 if any task failed; submitit's logs are in OUT/.submitit/<array id>/.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mrinet.recon.driver import reconstruct_dataset
from mrinet.slurm import jobs, partition

log = logging.getLogger("mrinet.slurm")


def run_shard(kspace: str, out: str, settings: Mapping[str, Any], shard: str) -> dict[str, int]:
    """One array task (what submitit runs on the node): shard `i/n` of the files; {tag: count}."""
    done = reconstruct_dataset(kspace, out, shard=shard, progress=False, **dict(settings))
    counts = {tag: len(paths) for tag, paths in done.items()}
    print(f"shard {shard}: {counts}", flush=True)
    return counts


def run_array(
    kspace: str | Path,
    out: str | Path,
    settings: Mapping[str, Any],
    shards: int,
    *,
    partition_name: str | None = None,
    account: str | None = None,
    timeout_min: int = 120,
    cpus_per_task: str | int = "auto",
    mem_gb: str | int = "auto",
    gpus_per_task: int = 0,
    array_parallelism: int = 64,
    setup: Sequence[str] = (),
) -> int:
    """Submit one array task per shard, wait for all, report; 0 if every shard succeeded."""
    import submitit  # the `sweep` extra: only a cluster run needs it

    partition.check_tools()
    found = partition.find_partition(partition_name)
    fitted = partition.fit_resources(
        {
            "cpus_per_task": cpus_per_task,
            "mem_gb": mem_gb,
            "gpus_per_node": gpus_per_task,
            "tasks_per_node": 1,
            "nodes": 1,
        },
        found,
    )
    out = Path(out).resolve()
    executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster="slurm")
    params = {
        "name": "mrinet-reconstruct",
        "timeout_min": timeout_min,
        "cpus_per_task": fitted["cpus_per_task"],
        "mem_gb": fitted["mem_gb"],
        "slurm_array_parallelism": array_parallelism,
        "slurm_setup": ["export PYTHONUNBUFFERED=1", *setup],
    }
    if fitted["gpus_per_node"]:
        params["gpus_per_node"] = fitted["gpus_per_node"]
    if partition_name:
        params["slurm_partition"] = partition_name
    if account:
        params["slurm_account"] = account
    executor.update_parameters(**params)
    names = [f"{i}/{shards}" for i in range(shards)]
    n = len(names)
    submitted, outcomes = jobs.submit_and_wait(
        lambda: executor.map_array(
            run_shard, [str(kspace)] * n, [str(out)] * n, [dict(settings)] * n, names
        ),
        lambda js: print(f"submitted SLURM job(s) {' '.join(j.job_id for j in js)}", flush=True),
    )
    failed = 0
    for shard, job, outcome in zip(names, submitted, outcomes):
        if isinstance(outcome, Exception):
            failed += 1
            print(f"shard {shard} (job {job.job_id}) failed: {outcome}", file=sys.stderr)
        else:
            print(f"shard {shard} (job {job.job_id}): {outcome}")
    print(f"{n - failed}/{n} shards done; outputs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":  # the old command path; the command is mrinet.cli.slurm_reconstruct
    from mrinet.cli.slurm_reconstruct import run

    run()
