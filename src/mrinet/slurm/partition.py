"""Before anything is submitted: SLURM's tools are there, the partition exists, the request fits.

A job asking for more than any node of its partition has is accepted by sbatch and pends
forever (Reason=PartitionConfig). So the launcher asks `sinfo` first, fills in the resources
left to `auto` from the smallest node of the partition, and refuses a request no node can
give with a message naming the launcher key and what the partition offers.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass

from mrinet.errors import ConfigError

TOOLS = ("sbatch", "sinfo", "squeue", "scancel")
KEY = "hydra.launcher"
# auto-sized requests never exceed these (a typical GPU job: 8 CPUs, 64 GB)
AUTO_MAX_CPUS, AUTO_MAX_MEM_GB = 8, 64


@dataclass(frozen=True)
class Partition:
    """The smallest node of a partition: what every job of an array can count on."""

    name: str
    nodes: int
    cpus: int  # per node
    mem_gb: float  # per node (RealMemory)
    gpus: int  # per node (gres gpu)
    available: bool


def check_tools() -> None:
    """sbatch/sinfo/squeue/scancel on PATH, or a ConfigError saying where to run from."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ConfigError(
            f"hydra/launcher=slurm needs SLURM's {', '.join(missing)} on PATH (not found)",
            "PATH",
            "run the sweep on the cluster's login node (module load slurm), or use "
            "hydra/launcher=local for parallel jobs on this machine",
        )


def _sinfo(*args: str) -> str:
    try:
        return subprocess.run(
            ["sinfo", *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    except subprocess.CalledProcessError as err:
        raise ConfigError(
            f"sinfo failed: {(err.stderr or err.stdout).strip()[:300]}",
            "sinfo",
            "check that the SLURM controller answers (sinfo) from this machine",
        ) from err
    except subprocess.TimeoutExpired as err:
        raise ConfigError(
            "sinfo did not answer within 60 s", "sinfo", "check the SLURM controller"
        ) from err


def gpus_in_gres(gres: str) -> int:
    """GPUs per node from sinfo's %G (`gpu:4`, `gpu:a100:8(S:0-1)`, `(null)`)."""
    total = 0
    for item in gres.split(","):
        match = re.match(r"^gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def partitions() -> dict[str, Partition]:
    """Every partition by name (the default one also under ''), smallest node of each."""
    nodes: dict[str, list[tuple[int, float, int, bool]]] = {}
    default = None
    for line in _sinfo("-h", "-N", "-o", "%P|%c|%m|%G|%a").splitlines():
        name, cpus, mem_mb, gres, avail = line.strip().split("|")
        if name.endswith("*"):
            name = name[:-1]
            default = name
        mem = float(re.sub(r"[^0-9.]", "", mem_mb) or 0) / 1024
        nodes.setdefault(name, []).append(
            (int(re.sub(r"\D", "", cpus) or 0), mem, gpus_in_gres(gres), avail == "up")
        )
    found = {
        name: Partition(
            name,
            len(rows),
            min(r[0] for r in rows),
            min(r[1] for r in rows),
            min(r[2] for r in rows),
            any(r[3] for r in rows),
        )
        for name, rows in nodes.items()
    }
    if default is not None:
        found[""] = found[default]
    return found


def find_partition(name: str | None) -> Partition:
    """The named partition (or the cluster's default), or a ConfigError listing the others."""
    known = partitions()
    named = {k: v for k, v in known.items() if k}
    if not name:
        if "" not in known:
            raise ConfigError(
                "the cluster has no default partition",
                f"{KEY}.partition",
                f"set {KEY}.partition to one of: {', '.join(sorted(named)) or '(none)'}",
            )
        return known[""]
    for candidate in str(name).split(","):
        if candidate not in named:
            raise ConfigError(
                f"partition {candidate!r} does not exist on this cluster",
                f"{KEY}.partition",
                f"use one of: {', '.join(sorted(named)) or '(none)'} (sinfo lists them)",
            )
    first = named[str(name).split(",")[0]]
    if not first.available:
        raise ConfigError(
            f"partition {first.name!r} is down", f"{KEY}.partition", "choose another partition"
        )
    return first


def fit_resources(params: dict, partition: Partition) -> dict:
    """`params` (the launcher's) with `auto` resources sized to the partition, checked to fit.

    auto rules (per job): gpus_per_node from the trainer (already resolved); cpus_per_task =
    the node's CPUs per GPU for GPU jobs, else the node's CPUs / tasks_per_node, at most 8;
    mem_gb = the node's memory in proportion to the CPUs taken, at most 64. Numbers given by
    the user are kept and checked: nothing is submitted that no node of the partition can run.
    """
    out = dict(params)
    tasks = int(out.get("tasks_per_node") or 1)
    gpus = int(out.get("gpus_per_node") or 0)
    where = f"partition {partition.name!r} (smallest node: {partition.cpus} CPUs, "
    where += f"{partition.mem_gb:.0f} GB, {partition.gpus} GPUs)"
    if gpus > partition.gpus:
        fix = (
            "a CPU partition: use trainer=cpu (gpus_per_node then is 0), or choose a GPU partition"
            if partition.gpus == 0
            else f"lower trainer.devices / {KEY}.gpus_per_node to <= {partition.gpus}"
        )
        raise ConfigError(f"{KEY}.gpus_per_node={gpus} but {where}", f"{KEY}.gpus_per_node", fix)
    cpus = out.get("cpus_per_task")
    if cpus in (None, "auto"):
        share = partition.cpus // max(partition.gpus, 1) if gpus else partition.cpus // tasks
        cpus = max(1, min(AUTO_MAX_CPUS, share))
    cpus = int(cpus)
    if cpus * tasks > partition.cpus:
        raise ConfigError(
            f"{KEY}.cpus_per_task={cpus} x tasks_per_node={tasks} = {cpus * tasks} CPUs per "
            f"node, but {where}",
            f"{KEY}.cpus_per_task",
            f"set {KEY}.cpus_per_task<={partition.cpus // tasks} (or auto)",
        )
    mem = out.get("mem_gb")
    if mem in (None, "auto"):
        share = partition.mem_gb * cpus * tasks / max(partition.cpus, 1)
        mem = max(1, min(AUTO_MAX_MEM_GB, math.floor(share)))
    mem = int(mem)
    if mem > partition.mem_gb:
        raise ConfigError(
            f"{KEY}.mem_gb={mem} (per node) but {where}",
            f"{KEY}.mem_gb",
            f"set {KEY}.mem_gb<={math.floor(partition.mem_gb)} (or auto)",
        )
    nodes = int(out.get("nodes") or 1)
    if nodes > partition.nodes:
        raise ConfigError(
            f"{KEY}.nodes={nodes} (trainer.num_nodes) but {where} has {partition.nodes} node(s)",
            f"{KEY}.nodes",
            f"set trainer.num_nodes<={partition.nodes}",
        )
    out.update(cpus_per_task=cpus, mem_gb=mem, gpus_per_node=gpus)
    return out


def gpus_for(accelerator: str, devices: object) -> int:
    """Resolver `mrinet_slurm_gpus`: GPUs per node to ask for, from the trainer config.

    A CPU trainer asks for none (a gres request on a CPU partition is rejected by sbatch);
    a GPU trainer asks for `devices` (one task per GPU). `devices: auto/-1` cannot be sized.
    """
    if str(accelerator) not in ("gpu", "cuda"):
        return 0
    try:
        count = int(devices)
    except (TypeError, ValueError):
        count = -1
    if count < 1:
        raise ConfigError(
            f"trainer.devices={devices} cannot size a SLURM request",
            "trainer.devices",
            "give the number of GPUs per node, e.g. trainer.devices=4",
        )
    return count
