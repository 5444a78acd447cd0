"""Where a run writes: run dirs decided before it starts (resume, SLURM steps, timestamps)."""

from __future__ import annotations

import os
from pathlib import Path

from mrinet.errors import CheckpointError, MrinetError


def find_last_checkpoint(log_dir: str | Path, task_name: str, name: str = "last.ckpt") -> Path:
    """The newest `last.ckpt` (or `name`) of `task_name` (for `ckpt_path=last`)."""
    runs = Path(log_dir) / task_name
    found = [
        *runs.glob(f"runs/*/checkpoints/{name}"),
        *runs.glob(f"multiruns/*/*/checkpoints/{name}"),
    ]
    candidates = sorted(found, key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CheckpointError(
            f"no {name} found for task {task_name!r}",
            runs,
            f"train once first (python -m mrinet.train experiment={task_name}), or give the "
            "path of a .ckpt",
        )
    return candidates[-1]


def newest_best_checkpoint(log_dir: str, task_name: str) -> str:
    """Hydra resolver `mrinet_best_ckpt`: the newest best.ckpt of `task_name` (the first stage
    of configs/experiment/dti_mlp_autocontext.yaml); the resolved path is what the run records."""
    return str(find_last_checkpoint(log_dir, task_name, "best.ckpt"))


def checkpoint_run_dir(ckpt: str | Path) -> Path | None:
    """The run dir a checkpoint was written into (`<run>/checkpoints/x.ckpt`, `<run>/hpc_ckpt_N.ckpt`)."""
    ckpt = Path(ckpt).resolve()
    for run_dir in (ckpt.parent.parent, ckpt.parent):
        if (run_dir / ".hydra").is_dir() and (
            ckpt.parent.name == "checkpoints" or run_dir == ckpt.parent
        ):
            return run_dir
    return None


def run_dir_for(runs_dir: str, timestamp: str, train: object, ckpt_path: object) -> str:
    """Hydra resolver `mrinet_run_dir`: where a training run writes, decided before it starts.

    - resuming (`train` and `ckpt_path`: `last` or a checkpoint inside a run dir): that run's dir,
      so the run continues in its own dir, TensorBoard log and checkpoints;
    - one task of a multi-task SLURM step started by srun (DDP without submitit): `slurm-<job id>`,
      the same for every rank and again after a requeue (Lightning then resumes from the
      `hpc_ckpt_*.ckpt` it saved there on the requeue signal);
    - otherwise `<runs_dir>/<timestamp>` (microseconds: runs started together do not collide).
    Never raises: a missing checkpoint is reported by mrinet.train with a clear message.
    """
    if train in (True, "true", "True") and ckpt_path not in (None, "", "null", "None"):
        runs = Path(runs_dir)
        try:
            ckpt = (
                find_last_checkpoint(runs.parent.parent, runs.parent.name)
                if str(ckpt_path) == "last"
                else Path(str(ckpt_path))
            )
        except MrinetError:
            ckpt = None
        run_dir = checkpoint_run_dir(ckpt) if ckpt is not None and ckpt.is_file() else None
        if run_dir is not None:
            return str(run_dir)
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        if "SUBMITIT_EXECUTOR" not in os.environ:  # submitit pickles an already-resolved dir
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            job = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
            return str(Path(runs_dir) / f"slurm-{job}")
    return str(Path(runs_dir) / timestamp)


def process_rank() -> int:
    """This process's DDP rank, from the environment it was started with: SLURM's task number
    in a step of several tasks (srun, submitit), else the rank Lightning gives the processes it
    starts itself (LOCAL_RANK), else 0."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    for key in ("RANK", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def rank_suffix() -> str:
    """Hydra resolver `mrinet_rank_suffix`: '' on rank 0, `.rank<k>` on the others (one log
    file per rank: ranks of one run share its dir, and appended to one file before)."""
    rank = process_rank()
    return f".rank{rank}" if rank else ""


def hydra_subdir_for(output_dir: str, timestamp: str) -> str | None:
    """Hydra resolver `mrinet_hydra_subdir`: `.hydra`, or `.hydra/resumed-<timestamp>` when the
    run dir already holds a run (resume), so the original config and overrides are kept.
    DDP ranks > 0 write none (rank 0 records the run; a second rank found rank 0's config and
    wrote a `resumed-` folder though nothing resumed)."""
    if process_rank() > 0:
        return None
    if (Path(output_dir) / ".hydra" / "config.yaml").is_file():
        return f".hydra/resumed-{timestamp}"
    return ".hydra"
