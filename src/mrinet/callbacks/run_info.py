"""Self-describing checkpoints: the resolved model and data configs travel inside them."""

from __future__ import annotations

import pytorch_lightning as pl


class RunInfoInCheckpoint(pl.Callback):
    """Store the resolved model and data configs in every checkpoint under the key 'mrinet'.

    eval and predict rebuild the model (and, for eval, the data) from a checkpoint alone, and
    every value is a plain type, so checkpoints load with torch.load(weights_only=True).
    """

    def __init__(self, info: dict) -> None:
        self.info = info

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["mrinet"] = self.info
