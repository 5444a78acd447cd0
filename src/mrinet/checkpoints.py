"""Checkpoints: safe loading (weights_only) and rebuilding the model a run trained."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

from mrinet.errors import CheckpointError


def find_last_checkpoint(log_dir: str | Path, task_name: str) -> Path:
    """The newest `last.ckpt` of `task_name` (for `ckpt_path=last`)."""
    runs = Path(log_dir) / task_name
    found = [
        *runs.glob("runs/*/checkpoints/last.ckpt"),
        *runs.glob("multiruns/*/*/checkpoints/last.ckpt"),
    ]
    candidates = sorted(found, key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CheckpointError(
            f"no last.ckpt found for task {task_name!r}",
            runs,
            "train once first, or give ckpt_path=/path/to/file.ckpt",
        )
    return candidates[-1]


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
    from mrinet.errors import MrinetError

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


def hydra_subdir_for(output_dir: str, timestamp: str) -> str:
    """Hydra resolver `mrinet_hydra_subdir`: `.hydra`, or `.hydra/resumed-<timestamp>` when the
    run dir already holds a run (resume), so the original config and overrides are kept."""
    if (Path(output_dir) / ".hydra" / "config.yaml").is_file():
        return f".hydra/resumed-{timestamp}"
    return ".hydra"


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with torch.load(weights_only=True): tensors and plain types only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            "checkpoint not found", path, "give ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        OSError,
        ValueError,
    ) as err:
        raise CheckpointError(
            f"cannot read checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
            path,
            "the file is truncated, corrupt or not a PyTorch checkpoint; use another (e.g. last.ckpt)",
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            "not a Lightning checkpoint (no state_dict)",
            path,
            "give a .ckpt written by mrinet.train",
        )
    if "mrinet" not in checkpoint:
        raise CheckpointError(
            "checkpoint has no mrinet run information",
            path,
            "give a checkpoint written by mrinet.train",
        )
    return checkpoint


def build_model(checkpoint: dict, path: str | Path = "checkpoint"):
    """Instantiate the LightningModule recorded in the checkpoint and load its weights."""
    from hydra.utils import instantiate

    model = instantiate(checkpoint["mrinet"]["model"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"weights do not fit the model recorded in the checkpoint: {str(err).splitlines()[0][:300]}",
            path,
            "the checkpoint was written by another model/experiment; use a checkpoint of this run",
        ) from err
    return model.eval()


def check_fits_model(checkpoint: dict, model, path: str | Path = "checkpoint") -> None:
    """Refuse, naming the mismatch, a checkpoint whose weights do not fit `model` (resume with
    ckpt_path=... from another model or experiment) before Lightning fails deep inside."""
    info = checkpoint.get("mrinet", {})
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    # empty buffers (data-derived scaling, class weights) take the checkpoint's size
    resized = sorted(
        k for k in set(ours) & set(theirs) if ours[k] != theirs[k] and 0 not in ours[k]
    )
    if not (missing or unexpected or resized):
        return
    trained = info.get("model", {})
    detail = (
        f"missing {missing[:3]}"
        if missing
        else f"unexpected {unexpected[:3]}"
        if unexpected
        else f"{resized[0]} is {theirs[resized[0]]} in the checkpoint, {ours[resized[0]]} here"
    )
    raise CheckpointError(
        f"the checkpoint was written by task {info.get('task_name', '?')!r} "
        f"(model {trained.get('_target_', '?')}, net {trained.get('net', {}).get('_target_', '?')}) "
        f"and does not fit this model: {detail}",
        path,
        "resume with a checkpoint of the same experiment and model settings (ckpt_path=last "
        "picks this task's newest), or start without ckpt_path",
    )
