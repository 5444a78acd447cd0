"""Reconstruct a k-space dataset at cluster scale: one SLURM array task per shard.

    python -m mrinet.slurm.reconstruct_array --shards 8 [--partition P] [--timeout-min 120] \\
        [--cpus-per-task auto] [--mem-gb auto] [--setup "source ~/venv/bin/activate"] \\
        -- --kspace K --out OUT [any python -m mrinet.reconstruct option]

Task i runs `python -m mrinet.reconstruct ... --shard i/N` (mrinet.run.shards: disjoint shares
by sorted file name), so the outputs are the files one process would write, no two tasks
write one file, and every output is written atomically. Run the same command again after a
failure, a time limit or a cancelled array: outputs already there are kept, only the missing
ones are computed. This command waits for the array (cancelling it if interrupted) and
exits 1 if any task failed; submitit's logs are in OUT/.submitit/<array id>/.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("mrinet.slurm")


def run_shard(reconstruct_args: list[str], shard: str) -> dict[str, int]:
    """One array task: `mrinet.reconstruct --shard` (what submitit runs on the node)."""
    from mrinet.reconstruct import main

    out = main([*reconstruct_args, "--shard", shard, "--no-progress"])
    return {tag: len(paths) for tag, paths in out.items()}


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        own, rest = argv[:split], argv[split + 1 :]
    else:
        own, rest = argv, []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, required=True, help="array size (tasks)")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--timeout-min", type=int, default=120)
    p.add_argument("--cpus-per-task", default="auto")
    p.add_argument("--mem-gb", default="auto")
    p.add_argument("--gpus-per-task", type=int, default=0, help="1 with --device cuda")
    p.add_argument("--array-parallelism", type=int, default=64)
    p.add_argument("--setup", action="append", default=[], help="shell line before the task")
    args = p.parse_args(own)
    if not any(a == "--kspace" or a.startswith("--kspace=") for a in rest) or not any(
        a == "--out" or a.startswith("--out=") for a in rest
    ):
        p.error("give the reconstruction's options after --, at least --kspace K --out OUT")
    return args, rest


def out_dir_of(rest: list[str]) -> Path:
    for i, a in enumerate(rest):
        if a == "--out":
            return Path(rest[i + 1])
        if a.startswith("--out="):
            return Path(a.split("=", 1)[1])
    raise AssertionError("checked in parse()")


def main(argv: list[str] | None = None) -> int:
    """Submit the array, wait for it, report; 0 if every shard succeeded."""
    import submitit

    from mrinet.errors import ConfigError
    from mrinet.slurm import jobs, partition

    args, rest = parse(sys.argv[1:] if argv is None else argv)
    if args.shards < 1:
        raise ConfigError(f"--shards {args.shards}", "--shards", "give at least 1")
    partition.check_tools()
    found = partition.find_partition(args.partition)
    fitted = partition.fit_resources(
        {
            "cpus_per_task": args.cpus_per_task,
            "mem_gb": args.mem_gb,
            "gpus_per_node": args.gpus_per_task,
            "tasks_per_node": 1,
            "nodes": 1,
        },
        found,
    )
    out = out_dir_of(rest).resolve()
    executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster="slurm")
    params = {
        "name": "mrinet-reconstruct",
        "timeout_min": args.timeout_min,
        "cpus_per_task": fitted["cpus_per_task"],
        "mem_gb": fitted["mem_gb"],
        "slurm_array_parallelism": args.array_parallelism,
        "slurm_setup": ["export PYTHONUNBUFFERED=1", *args.setup],
    }
    if fitted["gpus_per_node"]:
        params["gpus_per_node"] = fitted["gpus_per_node"]
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.account:
        params["slurm_account"] = args.account
    executor.update_parameters(**params)
    shards = [f"{i}/{args.shards}" for i in range(args.shards)]
    submitted, outcomes = jobs.submit_and_wait(
        lambda: executor.map_array(run_shard, [rest] * len(shards), shards),
        lambda js: print(f"submitted SLURM job(s) {' '.join(j.job_id for j in js)}", flush=True),
    )
    failed = 0
    for shard, job, outcome in zip(shards, submitted, outcomes):
        if isinstance(outcome, Exception):
            failed += 1
            print(f"shard {shard} (job {job.job_id}) failed: {outcome}", file=sys.stderr)
        else:
            print(f"shard {shard} (job {job.job_id}): {outcome}")
    print(f"{len(shards) - failed}/{len(shards)} shards done; outputs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    from mrinet.errors import MrinetError

    try:
        raise SystemExit(main())
    except MrinetError as err:
        raise SystemExit(f"mrinet: {type(err).__name__}: {err}") from None
