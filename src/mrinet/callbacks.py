"""Callbacks mrinet adds to every run: progress bar choice and self-describing checkpoints."""

from __future__ import annotations

import sys

import pytorch_lightning as pl


def progress_bar(kind: str = "auto", refresh_rate: int = 50) -> pl.Callback:
    """Rich bar in a terminal; a TQDM bar refreshing every `refresh_rate` steps in log files."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    if kind == "auto":
        kind = "rich" if sys.stdout.isatty() else "tqdm"
    if kind == "rich":
        return RichProgressBar(refresh_rate=1, leave=True)
    if kind == "tqdm":
        return TQDMProgressBar(refresh_rate=refresh_rate)
    if kind == "none":
        return TQDMProgressBar(refresh_rate=0)  # a bar with refresh 0 is Lightning's "disabled"
    raise ValueError(f"callbacks.progress_bar.kind={kind!r}: use auto, rich, tqdm or none")


class RunInfoInCheckpoint(pl.Callback):
    """Store the resolved model and data configs in every checkpoint under the key 'mrinet'.

    eval and predict rebuild the model (and, for eval, the data) from a checkpoint alone, and
    every value is a plain type, so checkpoints load with torch.load(weights_only=True).
    """

    def __init__(self, info: dict) -> None:
        self.info = info

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["mrinet"] = self.info


class TissueMapLogger(pl.Callback):
    """Each validation epoch, log axial/coronal/sagittal slices of one validation subject to
    TensorBoard: T1w, true classes and predicted classes (DTI voxel data with volumes only)."""

    def __init__(self, every_n_epochs: int = 1, split: str = "val") -> None:
        self.every_n_epochs, self.split = max(int(every_n_epochs), 1), split

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        example = getattr(trainer.datamodule, "example_subject", lambda split: None)(self.split)
        writer = pl_module.tensorboard() if hasattr(pl_module, "tensorboard") else None
        if example is None or writer is None:
            return
        import numpy as np
        import torch

        from mrinet.models.figures import tissue_map_figure

        maps, true = example["maps"], example["classes"]
        features = list(maps)
        inside = true >= 0
        x = torch.from_numpy(np.stack([maps[f][inside] for f in features], axis=1)).to(
            pl_module.device
        )
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            predicted_flat = pl_module(x).argmax(1).cpu().numpy()
        pl_module.train(was_training)
        predicted = np.full(true.shape, -1, dtype=np.int64)
        predicted[inside] = predicted_flat
        t1w = maps["T1w"] if "T1w" in maps else maps[features[0]]
        names = pl_module.class_names or [str(i) for i in range(int(true.max()) + 1)]
        title = f"{example['name']} (epoch {trainer.current_epoch})"
        fig = tissue_map_figure(t1w, true, predicted, names, title)
        writer.add_figure(
            f"{self.split}/tissue_maps", fig, global_step=trainer.global_step, close=True
        )


class PreciseBatchNorm(pl.Callback):
    """Before each validation in fit, recompute batch-norm running statistics from the
    training data with the current weights ("precise BN"); no-op for nets without batch norm.

    BatchNorm's running mean/var are momentum averages over past steps, i.e. over older
    weights. With few steps per epoch (the recon CNN: 7) they lag the weights so far that the
    eval-mode logits of a net that classifies its training batches well all fall on one side
    (val acc 0.5, val loss 2-3 while AUROC is ~1). Here each BatchNorm layer is reset and set
    to a cumulative average (momentum None), up to `max_batches` training batches run forward
    with only the batch-norm layers in train mode and no gradients, and the momentum is
    restored. Validation and the checkpoints saved after it then use statistics of the current
    weights. Cost: one forward pass over (part of) the training split per epoch. Under DDP
    each process averages over its share and the statistics are then averaged over processes.
    """

    def __init__(self, max_batches: int | None = 200) -> None:
        if max_batches is not None and int(max_batches) < 1:
            raise ValueError(
                f"PreciseBatchNorm max_batches must be >= 1 or null, got {max_batches}"
            )
        self.max_batches = None if max_batches is None else int(max_batches)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        import torch
        from torch.nn.modules.batchnorm import _BatchNorm

        norms = [
            m for m in pl_module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
        ]
        loader = trainer.train_dataloader
        if not norms or loader is None:
            return
        modes = [m.training for m in norms]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.train()
        try:
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    if self.max_batches is not None and i >= self.max_batches:
                        break
                    batch = trainer.strategy.batch_to_device(batch)
                    pl_module(batch[0])
        finally:
            for m, mode, momentum in zip(norms, modes, momenta):
                m.momentum = momentum
                m.train(mode)
        if trainer.world_size > 1:
            for m in norms:
                m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
                m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))
