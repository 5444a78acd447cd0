"""Reconstruct a k-space dataset at cluster scale: one SLURM array task per shard.

    mrinet-slurm-reconstruct --shards 8 [--partition P] [--timeout-min 120] \\
        [--cpus-per-task auto] [--mem-gb auto] [--setup "source ~/venv/bin/activate"] \\
        -- --kspace K --out OUT [any mrinet-reconstruct option]

(also `python -m mrinet.slurm.reconstruct_array`). The reconstruction options are checked here,
before anything is submitted; task i reconstructs shard i/N (mrinet.slurm.reconstruct_array).
Exits 1 if any task failed; run the same command again to compute only what is missing.
"""

from __future__ import annotations

import argparse
import sys

from mrinet.cli import console_script, options
from mrinet.cli.reconstruct import parser as reconstruct_parser
from mrinet.cli.reconstruct import settings_from
from mrinet.errors import ConfigError
from mrinet.recon.driver import RUN_SETTINGS
from mrinet.recon.protocol import ReconProtocol
from mrinet.slurm.reconstruct_array import run_array


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    """(this command's options, the reconstruction's options after `--`)."""
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
    return args, reconstruct_parser().parse_args(rest)


def main(argv: list[str] | None = None) -> int:
    """Submit the array, wait for it, report; 0 if every shard succeeded."""
    args, recon = parse(sys.argv[1:] if argv is None else argv)
    if args.shards < 1:
        raise ConfigError(f"--shards {args.shards}", "--shards", "give at least 1")
    settings = settings_from(recon)
    ReconProtocol.from_settings(
        {k: v for k, v in settings.items() if k not in (*RUN_SETTINGS, "workers")}
    )  # a bad option fails here, not in every task
    return run_array(
        recon.kspace,
        recon.out,
        settings,
        args.shards,
        partition_name=args.partition,
        **options(args, "account", "timeout_min", "cpus_per_task", "mem_gb", "gpus_per_task"),
        **options(args, "array_parallelism", "setup"),
    )


run = console_script(main)


if __name__ == "__main__":
    run()
