"""Checkpoints written beside their final name, then renamed: never a truncated last.ckpt.

Lightning 2.6 saves a checkpoint through an fsspec transaction whose temporary file lies in
the system temp dir; when that is another filesystem than the run dir (a /scratch or NFS run
dir, a local /tmp: the usual case on clusters), the commit copies it over the old checkpoint,
so a disk that fills during the copy leaves the previous last.ckpt truncated. Writing the
temporary beside the checkpoint and renaming it (mrinet.io.atomic) keeps the previous one whole
under its name, and a full disk ends in one DiskFullError naming the checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from mrinet.errors import DiskFullError, disk_full_error
from mrinet.io.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves go to a temporary sibling, then an atomic rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote stores: Lightning's way
            return super().save_checkpoint(checkpoint, path, storage_options)
        import io

        import torch

        buffer = io.BytesIO()  # as Lightning does; a full disk then fails in a plain write
        torch.save(checkpoint, buffer)
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        try:
            with atomic_file(path) as tmp, open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
        except DiskFullError as err:  # the size is known here: say it
            cause = err.__cause__ if err.__cause__ is not None else err
            raise disk_full_error(cause, path, needed=buffer.getbuffer().nbytes) from cause
        return None


def use_atomic_checkpoints(trainer) -> None:
    """Give the trainer's strategy AtomicCheckpointIO unless a custom CheckpointIO is set."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
