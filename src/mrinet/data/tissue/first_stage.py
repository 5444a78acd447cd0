"""Auto-context: a trained voxel classifier's class probabilities as a second one's inputs.

Tu and Bai's auto-context (IEEE TPAMI 32:1744, 2010): a classifier that sees, besides the
image features, the class probabilities a first classifier gave the voxel's neighbourhood
learns the shape of the first map (how wide the callosal slab it found is, where its centre
lies) that neither DTI values nor positions give it. The first stage is any mrinet DTI
checkpoint (`data.context_model`, e.g. a run of experiment=dti_mlp_context). Its probabilities
are computed on each subject's brain mask from the same maps, with its own inputs (its
features and its own spatial context) and its own tuned decision offsets, and enter the second
stage as log-probabilities above a floor, log(max(p, 1e-4)) + log(1e4): 0 where p <= 1e-4,
outside the brain and beyond the volume (where the patches read their zero padding), 9.2 where
the first stage is sure. Training subjects get in-sample probabilities (the first stage was
fitted on them; measured: its callosum Dice is 0.91 there against 0.82 on test, a gap the
second stage learns through). The second-stage checkpoint carries the first stage (weights,
data settings, scaling), so eval and predict need no other file.
`load_first_stage` is what the assemblers (the DataModule constructor, predict, eval through
run/checkpoints) call: it reads the checkpoint (mrinet.io.checkpoints, allowlisted targets) and
hands the loaded stage to the ContextSpec; the record itself reads nothing. Plain arrays in,
arrays out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mrinet.data.tissue.context import ContextSpec
from mrinet.data.tissue.geometry import volume_inputs
from mrinet.data.tissue.subjects import read_brain_mask, subject_context
from mrinet.errors import CheckpointError, ConfigError
from mrinet.io.checkpoints import load_checkpoint
from mrinet.models.restore import build_model

FLOOR = 1e-4  # probabilities below it read as it: a bounded log, 0 = "surely not"
KEPT = ("state_dict", "mrinet", "data_spec")  # what a second-stage checkpoint carries of it


def load_first_stage(source) -> FirstStage:
    """`source`: a checkpoint path, the checkpoint dict a second stage carries, or a loaded
    FirstStage (returned as it is)."""
    if isinstance(source, FirstStage):
        return source
    if isinstance(source, Mapping):
        return FirstStage(source, "the first stage stored in the checkpoint")
    return FirstStage(load_checkpoint(Path(str(source))), str(source))


def assemble_context(context: ContextSpec) -> ContextSpec:
    """The spec with its first stage loaded (`autocontext`), else the spec itself."""
    if "autocontext" not in context.kinds or context.model is not None:
        return context
    return context.with_first_stage(load_first_stage(context.source))


def context_for(data_cfg: Mapping, embedded: Mapping | None = None) -> ContextSpec:
    """The context a checkpoint's data settings record, first stage loaded (`embedded`: the
    copy a second stage carries, in place of the recorded path)."""
    return assemble_context(ContextSpec.from_data_config(data_cfg, embedded))


class FirstStage:
    """A first-stage DTI classifier, loaded once, applied to whole subjects on demand."""

    def __init__(self, checkpoint: Mapping, where: str) -> None:
        self.where = where
        data = dict(checkpoint.get("mrinet", {}).get("data", {}))
        if "features" not in data or "classes" not in data:
            raise CheckpointError(
                "data.context_model is not a DTI voxel classifier (no features/classes recorded)",
                where,
                "give a best.ckpt of experiment=dti_mlp_context (or another DTI experiment)",
            )
        self.checkpoint = {key: checkpoint[key] for key in KEPT if key in checkpoint}
        self.data_cfg = data
        self.features, self.classes = list(data["features"]), list(data["classes"])
        digest = hashlib.sha1()
        for name, value in sorted(self.checkpoint["state_dict"].items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        self.key = digest.hexdigest()[:10]  # names the voxel caches built with it
        self._model = None
        self._context: ContextSpec | None = None

    @property
    def context(self) -> ContextSpec:
        """The first stage's own spatial context (itself possibly an auto-context stage)."""
        if self._context is None:
            self._context = context_for(
                self.data_cfg, self.checkpoint["mrinet"].get("context_model")
            )
        return self._context

    @property
    def model(self):
        if self._model is None:
            self._model = build_model(self.checkpoint, self.where)
        return self._model

    def check_fits(self, features: Sequence[str], classes: Sequence[str]) -> None:
        """The second stage reads the first one's maps from its own features and names its
        log-probability columns by its own classes: both must match."""
        missing = [name for name in self.features if name not in features]
        if missing:
            raise ConfigError(
                f"the first stage ({self.where}) reads features {self.features}; "
                f"data.features={list(features)} lacks {missing}",
                "data.features",
                f"train the second stage with data.features={self.features}",
            )
        if list(classes) != self.classes:
            raise ConfigError(
                f"the first stage ({self.where}) has classes {self.classes}, the second "
                f"data.classes={list(classes)}",
                "data.classes",
                "use a first stage trained on the same classes",
            )

    def log_probabilities(
        self,
        subject_dir: Path,
        maps: Mapping[str, np.ndarray],
        affine: np.ndarray,
        layout: str = "flat",
        batch_size: int = 65536,
    ) -> np.ndarray:
        """(K, X, Y, Z) float32: the first stage's log-probability above the floor per class,
        on the subject's brain mask (finite, nonzero voxels without one), 0 elsewhere."""
        shape = next(iter(maps.values())).shape
        stack = np.stack([maps[name] for name in self.features])
        keep = np.all(np.isfinite(stack), axis=0)
        brain, _ = read_brain_mask(subject_dir, shape, affine, layout)
        keep &= brain if brain is not None else np.any(stack != 0, axis=0)
        proba = voxel_probabilities(
            self.model,
            maps,
            self.features,
            keep,
            affine,
            self.context,
            subject_dir,
            layout,
            batch_size,
        )
        out = np.zeros((len(self.classes), *shape), dtype=np.float32)
        out[:, keep] = (np.log(np.clip(proba, FLOOR, 1.0)) - math.log(FLOOR)).T
        return out


def voxel_probabilities(
    model,
    maps: Mapping[str, np.ndarray],
    features: Sequence[str],
    keep: np.ndarray,
    affine: np.ndarray,
    context: ContextSpec,
    subject_dir: Path,
    layout: str = "flat",
    batch_size: int = 65536,
) -> np.ndarray:
    """A trained model's class probabilities (N, K) float32 at the voxels of `keep`, its inputs
    built as in training: the features, then its spatial context (a segmentation net: the
    whole volume at once)."""
    import torch

    if getattr(model.net, "dense_output", False):
        x = torch.from_numpy(volume_inputs(dict(maps), list(features)))[None]
        if model.input_mean.numel() and x.shape[1] != model.input_mean.numel():
            raise CheckpointError(
                f"the model takes {model.input_mean.numel()} feature channels, the subject "
                f"gives {x.shape[1]}",
                "data.features",
                "use the checkpoint's own data settings (no data overrides) for prediction",
            )
        with torch.inference_mode():
            proba = model.predict_proba(x)[0].movedim(0, -1).numpy()  # (X, Y, Z, K)
        return proba[keep].astype(np.float32, copy=False)
    x = np.stack([maps[f][keep] for f in features], axis=1).astype(np.float32)
    if context.kinds:
        x = np.concatenate(
            [x, subject_context(subject_dir, maps, features, keep, affine, context, layout)], 1
        )
    trained_inputs = model.input_mean.numel()
    if trained_inputs and x.shape[1] != trained_inputs:
        raise CheckpointError(
            f"the model takes {trained_inputs} inputs, predict built {x.shape[1]} "
            f"({len(features)} features + context {context.describe()})",
            subject_dir,
            "use the checkpoint's own data settings (no data overrides) for prediction",
        )
    x = torch.from_numpy(x)
    with torch.inference_mode():
        if not len(x):
            return np.zeros((0, model.num_classes), dtype=np.float32)
        return torch.cat([model.predict_proba(chunk) for chunk in x.split(batch_size)]).numpy()


ContextModel = FirstStage  # its name before the data/ task packages
