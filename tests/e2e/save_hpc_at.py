"""Test helper (a callback given on the command line): save an hpc checkpoint at a chosen
instant, exactly as Lightning's requeue-signal handler does when the signal lands there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytorch_lightning as pl


class SaveHpcAt(pl.Callback):
    """`points`: [epoch, where] pairs; where is after_last_val_batch or mid_epoch. The run
    dir's checkpoints/ at that instant are copied to hpc_ckpt_<n>.ckpt.checkpoints/."""

    def __init__(self, points: list) -> None:
        self.points = {(int(epoch), str(where)) for epoch, where in points}

    def _save(self, trainer: pl.Trainer, where: str) -> None:
        if trainer.state.fn != "fit" or (trainer.current_epoch, where) not in self.points:
            return
        self.points.discard((trainer.current_epoch, where))
        path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)
        # what the run dir's checkpoints were at that instant (a requeued job finds those)
        shutil.copytree(Path(trainer.default_root_dir) / "checkpoints", f"{path}.checkpoints")
        print(f"saved {path} epoch {trainer.current_epoch} {where}", flush=True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if batch_idx == trainer.num_val_batches[0] - 1:
            self._save(trainer, "after_last_val_batch")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == trainer.num_training_batches // 2:
            self._save(trainer, "mid_epoch")
