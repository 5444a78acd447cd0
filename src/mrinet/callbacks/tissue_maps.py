"""Tissue-map figures of a validation subject in TensorBoard (DTI voxel classification)."""

from __future__ import annotations

import contextlib

import pytorch_lightning as pl

from mrinet.callbacks.figures import tissue_map_figure


class TissueMapLogger(pl.Callback):
    """Each validation epoch, log axial/coronal/sagittal slices of one validation subject to
    TensorBoard: T1w, true classes and predicted classes (DTI voxel data with volumes only),
    on the model's figure epochs (`every_n_epochs=None`) or every n epochs.

    The subject's inputs are the DataModule's (`example_subject()["x"]`: the same features and
    spatial context as training, or the whole volume (1, F, X, Y, Z) for a segmentation net)
    and classes come from the model's decision rule (`predict_classes`), after the validation
    epoch has tuned it (hence on_validation_end).
    The scalar `<split>/wm_called_thalamus` is the share of that subject's white-matter voxels
    the map calls thalamus (the speckle the eye sees)."""

    def __init__(self, every_n_epochs: int | None = None, split: str = "val") -> None:
        self.every_n_epochs = every_n_epochs and max(int(every_n_epochs), 1)
        self.split = split
        self._example: dict | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if self.every_n_epochs and trainer.current_epoch % self.every_n_epochs:
            return
        if not self.every_n_epochs and not getattr(pl_module, "figures_now", lambda s: 1)("val"):
            return  # the model's FigureSchedule (figures within ~5 % of the run's time)
        writer = pl_module.tensorboard() if hasattr(pl_module, "tensorboard") else None
        if writer is None:
            return
        schedule = getattr(pl_module, "figure_schedule", None)
        # the budget counts all a map costs, the first epoch's reading of the subject included
        with schedule.timed() if schedule is not None else contextlib.nullcontext():
            if self._example is None:  # the same subject every epoch: read and featurised once
                read = getattr(trainer.datamodule, "example_subject", lambda split: None)
                self._example = read(self.split) or {}
            if self._example:
                self._draw(trainer, pl_module, self._example, writer)

    def _draw(self, trainer, pl_module, example, writer) -> None:
        import numpy as np
        import torch

        maps, true = example["maps"], example["classes"]
        features = list(maps)
        inside = true >= 0
        if "x" in example:
            x = torch.from_numpy(example["x"]).to(pl_module.device)
        else:
            x = torch.from_numpy(np.stack([maps[f][inside] for f in features], axis=1))
            x = x.to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            classify = getattr(pl_module, "predict_classes", None)
            predicted_flat = (classify(x) if classify else pl_module(x).argmax(1)).cpu().numpy()
        pl_module.train(was_training)
        if predicted_flat.ndim > 1:  # a segmentation net classified the whole volume (1, X, Y, Z)
            predicted_flat = predicted_flat[0][inside]
        predicted = np.full(true.shape, -1, dtype=np.int64)
        predicted[inside] = predicted_flat
        t1w = maps["T1w"] if "T1w" in maps else maps[features[0]]
        names = pl_module.class_names or [str(i) for i in range(int(true.max()) + 1)]
        if "thalamus" in names and "cortical_wm" in names:
            wm = true[inside] == names.index("cortical_wm")
            share = (
                float((predicted_flat[wm] == names.index("thalamus")).mean()) if wm.any() else 0.0
            )
            writer.add_scalar(f"{self.split}/wm_called_thalamus", share, trainer.global_step)
        title = f"{example['name']} (epoch {trainer.current_epoch})"
        fig = tissue_map_figure(t1w, true, predicted, names, title)
        writer.add_figure(
            f"{self.split}/tissue_maps", fig, global_step=trainer.global_step, close=True
        )
