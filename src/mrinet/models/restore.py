"""Rebuilding the LightningModule a checkpoint recorded: its (allowlisted) model config, its
weights and the DataSpec it was trained with. Used by eval, predict and export (through
mrinet.run.checkpoints) and by an auto-context DataModule for its first stage."""

from __future__ import annotations

from pathlib import Path

from mrinet.data.contract import DataSpec
from mrinet.errors import CheckpointError
from mrinet.io.trust import check_config


def build_model(checkpoint: dict, path: str | Path = "checkpoint"):
    """Instantiate the LightningModule recorded in the checkpoint and load its weights."""
    from hydra.utils import instantiate

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
