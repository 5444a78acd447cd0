"""Reading a checkpoint file safely: torch.load(weights_only=True), then every recorded
`_target_` checked against the allowlist (mrinet.io.trust) before anything uses it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from mrinet.errors import CheckpointError
from mrinet.io.trust import check_config


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

    check_config(checkpoint["mrinet"], path, "mrinet")  # data, never code: before any use
    return checkpoint
