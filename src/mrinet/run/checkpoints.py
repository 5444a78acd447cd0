"""Checkpoints: safe loading (weights_only) and rebuilding the model a run trained.

Reading the file lives in mrinet.io.checkpoints and rebuilding the model in
mrinet.models.restore (an auto-context DataModule needs both for its first stage, and data may
not import run); their names stay importable from here for the commands."""

from __future__ import annotations

from pathlib import Path

from mrinet.errors import CheckpointError
from mrinet.io.checkpoints import load_checkpoint
from mrinet.io.trust import check_config
from mrinet.models.restore import build_model, checkpoint_data_spec

__all__ = [
    "build_model",
    "check_fits_model",
    "checkpoint_data_spec",
    "checkpoint_datamodule",
    "load_checkpoint",
]


def check_fits_model(checkpoint: dict, model, path: str | Path = "checkpoint") -> None:
    """Refuse, naming the mismatch, a checkpoint whose weights do not fit `model` (resume with
    ckpt_path=... from another model or experiment) before Lightning fails deep inside."""
    info = checkpoint.get("mrinet", {})
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    # checkpoints from before the decision rule have no offsets (they load as plain argmax)
    missing = [k for k in missing if not k.endswith("logit_offset")]
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


def checkpoint_datamodule(checkpoint: dict, data_cfg=None):
    """The DataModule a checkpoint was trained with (`data_cfg`: its recorded data settings
    plus overrides); an auto-context checkpoint's first stage comes from the copy it carries,
    not from the recorded path, which may be on another machine or gone (unless
    `data.context_model` is overridden)."""
    from hydra.utils import instantiate

    recorded = checkpoint["mrinet"]["data"]
    data_cfg = recorded if data_cfg is None else data_cfg
    embedded = checkpoint["mrinet"].get("context_model")
    check_config({"data": recorded, "context_model": embedded}, "checkpoint", "mrinet")
    if embedded is None or data_cfg.get("context_model") != recorded.get("context_model"):
        return instantiate(data_cfg, _convert_="all")  # none, or another asked for explicitly
    return instantiate(data_cfg, _convert_="all", _partial_=True)(context_model=embedded)
