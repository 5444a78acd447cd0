"""The confusion-matrix figure of each validation/test epoch in TensorBoard (and MLflow)."""

from __future__ import annotations

import pytorch_lightning as pl

from mrinet.callbacks.figures import confusion_matrix_figure


class ConfusionMatrixFigure(pl.Callback):
    """Draw `<stage>/confusion_matrix` from the counts the model summed over the epoch
    (`pl_module.confusion[stage]`), on the epochs `pl_module.figures_now(stage)` names
    (the model's FigureSchedule for validation; test: always)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        confmat = getattr(pl_module, "confusion", {}).get(stage)
        if confmat is None or trainer.sanity_checking or not pl_module.figures_now(stage):
            return
        writer = pl_module.tensorboard()
        if writer is None:
            return
        names = pl_module.class_names or [str(i) for i in range(confmat.shape[0])]
        title = f"{stage} confusion matrix (epoch {trainer.current_epoch})"
        with pl_module.figure_schedule.timed():
            fig = confusion_matrix_figure(confmat.cpu().numpy(), names, title)
            step = trainer.global_step
            writer.add_figure(f"{stage}/confusion_matrix", fig, global_step=step, close=True)
