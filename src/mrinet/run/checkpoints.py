"""Checkpoints: safe loading (weights_only) and rebuilding the model a run trained."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from mrinet.errors import CheckpointError


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
    from mrinet.run.trust import check_config

    check_config(checkpoint["mrinet"], path, "mrinet")  # data, never code: before any use
    return checkpoint


def build_model(checkpoint: dict, path: str | Path = "checkpoint"):
    """Instantiate the LightningModule recorded in the checkpoint and load its weights."""
    from hydra.utils import instantiate

    from mrinet.run.trust import check_config

    check_config(checkpoint["mrinet"]["model"], path, "mrinet.model")
    model = instantiate(checkpoint["mrinet"]["model"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"weights do not fit the model recorded in the checkpoint: {str(err).splitlines()[0][:300]}",
            path,
            "the checkpoint was written by another model/experiment; use a checkpoint of this run",
        ) from err
    model.set_data_spec(checkpoint_data_spec(checkpoint, path))
    return model.eval()


def checkpoint_data_spec(checkpoint: dict, path: str | Path = "checkpoint"):
    """The DataSpec a checkpoint was trained with (older checkpoints: rebuilt from the model's
    data buffers and the recorded data classes)."""
    from mrinet.data.spec import DataSpec

    if "data_spec" in checkpoint:
        return DataSpec.from_dict(checkpoint["data_spec"], str(path))
    state = checkpoint.get("state_dict", {})
    classes = checkpoint.get("mrinet", {}).get("data", {}).get("classes")
    if not classes:
        raise CheckpointError(
            "the checkpoint records neither a data_spec nor the data's classes",
            path,
            "use a checkpoint written by mrinet.train",
        )

    def buffer(name):
        value = state.get(name)
        return None if value is None or not value.numel() else value

    return DataSpec(
        classes=classes,
        input_mean=buffer("input_mean"),
        input_std=buffer("input_std"),
        class_weights=buffer("class_weight"),
    )


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

    from mrinet.run.trust import check_config

    recorded = checkpoint["mrinet"]["data"]
    data_cfg = recorded if data_cfg is None else data_cfg
    embedded = checkpoint["mrinet"].get("context_model")
    check_config({"data": recorded, "context_model": embedded}, "checkpoint", "mrinet")
    if embedded is None or data_cfg.get("context_model") != recorded.get("context_model"):
        return instantiate(data_cfg, _convert_="all")  # none, or another asked for explicitly
    return instantiate(data_cfg, _convert_="all", _partial_=True)(context_model=embedded)
