"""Spatial context for voxel classifiers: brain-normalised coordinates and k x k x k patches.

The lecture's sample is one voxel's x = [T1w, FA, MD, AD, RD]. Anatomy is a stronger cue than
any DTI value: FreeSurfer's corpus callosum is a slab at the midline whose fibres continue,
labelled white matter, either side. `data.context` adds, per voxel,
- `coords`: its world position (affine, RAS+ mm) relative to the brain mask's centre, divided
  by the mask's spread per axis: the same anatomy gets the same numbers whatever the scanner's
  storage convention, field of view or head size;
- `patch`: every feature map's values in the k x k x k neighbourhood (the centre is the voxel's
  own features), with offsets taken along the world axes (R, A, S), so a flipped storage order
  gives the same columns. `data.patch_dilation` may list several dilations (e.g. [1, 3]): one
  patch per dilation, concatenated, so fine detail (the thalamus' border) and anatomy several mm
  away (the interhemispheric fissure above the callosal slab) reach the model together; an
  entry [dR, dA, dS] spaces a patch per world axis ([1, 1, 3]: is the fissure 6 mm above me, or
  one voxel to the side?). Built from whole volumes with tensor ops (pad, one flat gather): no
  per-voxel Python;
- `autocontext`: a trained first-stage classifier's class probabilities (`data.context_model`,
  data/tissue/first_stage.py), as log-probabilities at the voxel and in the same patches: the second
  stage sees the shape of the first one's map around it (Tu & Bai's auto-context).
The column records and settings' validation are in data/tissue/columns.py, the geometry in
data/tissue/geometry.py. A ContextSpec is a plain record: it never reads a file; the places
that assemble objects (the DataModules, predict) load the first stage and hand it over
(`with_first_stage`). Lightning-free: plain arrays in, arrays out, usable from a notebook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrinet.data.tissue.columns import (
    PATCHED,
    Column,
    check_patch_size,
    input_columns,
    parse_context,
    parse_dilations,
)
from mrinet.data.tissue.geometry import brain_coords, patch_columns
from mrinet.errors import CheckpointError, ConfigError


def given(context_model) -> bool:
    """Whether `data.context_model` names a first stage (None, "" and "null" do not)."""
    return not (
        context_model is None or (isinstance(context_model, str) and context_model in ("", "null"))
    )


@dataclass(frozen=True)
class ContextSpec:
    """Which spatial context a model's inputs carry (`data.context`, `data.patch_size`,
    `data.patch_dilation`), validated once; `kinds` is () for the lecture's voxel-only x.

    With `autocontext`, `source` says where the first stage comes from (a checkpoint path, or
    the checkpoint dict a second stage carries) and `model` is the loaded first stage
    (data/tissue/first_stage.py FirstStage), set by whoever assembles the objects."""

    kinds: tuple[str, ...] = ()
    patch_size: int = 3
    patch_dilation: tuple[tuple[int, int, int], ...] = ((1, 1, 1),)  # (dR, dA, dS) per patch
    model: object | None = field(default=None, compare=False, repr=False)
    source: object | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(
        cls, context=None, patch_size: int = 3, patch_dilation=1, context_model=None
    ) -> ContextSpec:
        """`context_model`: a first-stage checkpoint's path, the checkpoint itself (the copy a
        second-stage checkpoint carries) or a loaded first stage, for `autocontext`; refused
        without it, and a path that is no file is refused here, before anything is built. The
        checkpoint is not read here (`first_stage.load_first_stage` does, for the assembler)."""
        kinds = parse_context(context)
        dilations = ((1, 1, 1),)
        if any(kind in kinds for kind in PATCHED):
            check_patch_size(patch_size)
            dilations = parse_dilations(patch_dilation)
        spec = cls(kinds, int(patch_size), dilations)
        if "autocontext" in kinds:
            return spec.with_source(context_model)
        if given(context_model):
            raise ConfigError(
                f"data.context_model is set ({str(context_model)[:200]}) but data.context="
                f"{list(kinds) or 'none'} does not use it",
                "data.context_model",
                "add autocontext to data.context (e.g. data.context=[coords,patch,autocontext]) "
                "or drop data.context_model",
            )
        return spec

    @classmethod
    def from_data_config(cls, data_cfg: Mapping, embedded: Mapping | None = None) -> ContextSpec:
        """The context recorded in a checkpoint's data settings; `embedded`, the first-stage
        checkpoint the second stage carries, stands in for the recorded path (which may be gone)."""
        return cls.from_config(
            data_cfg.get("context", "none"),
            data_cfg.get("patch_size", 3),
            data_cfg.get("patch_dilation", 1),
            embedded if embedded is not None else data_cfg.get("context_model"),
        )

    def with_source(self, context_model) -> ContextSpec:
        """This spec with the first stage's source checked (given, and a file if a path)."""
        if not given(context_model):
            raise ConfigError(
                "data.context includes autocontext, which needs a trained first-stage classifier",
                "data.context_model",
                "train one (python -m mrinet.train experiment=dti_mlp_context) and give "
                "data.context_model=<its run dir>/checkpoints/best.ckpt; experiment="
                "dti_mlp_autocontext takes the newest dti_mlp_context run itself",
            )
        if isinstance(context_model, (str, Path)) and not Path(context_model).is_file():
            raise CheckpointError(
                "checkpoint not found",
                context_model,
                "give data.context_model=<run dir>/checkpoints/best.ckpt of a first-stage run",
            )
        if hasattr(context_model, "log_probabilities"):  # already loaded
            return dataclasses.replace(self, model=context_model, source=context_model.checkpoint)
        return dataclasses.replace(self, source=context_model)

    def with_first_stage(self, stage) -> ContextSpec:
        """This spec carrying its loaded first stage (a FirstStage)."""
        return dataclasses.replace(self, model=stage)

    @property
    def dilation_setting(self) -> int | list:
        """`data.patch_dilation` as written: an int for one isotropic patch, so the voxel caches
        keyed by it before lists existed stay valid; otherwise a list (per-axis entries as lists)."""
        written = [d[0] if len(set(d)) == 1 else list(d) for d in self.patch_dilation]
        return written[0] if len(written) == 1 and isinstance(written[0], int) else written

    @property
    def stage_classes(self) -> tuple[str, ...]:
        """The first stage's classes (its log-probability maps), () without autocontext."""
        return tuple(self.model.classes) if self.model is not None else ()

    def feature_names(self, features: Sequence[str]) -> list[Column]:
        """The model's input columns (records that are also their names)."""
        return input_columns(
            features, self.kinds, self.patch_size, self.patch_dilation, self.stage_classes
        )

    def describe(self) -> str:
        if not self.kinds:
            return "none"
        dilations = ",".join(
            str(d[0]) if len(set(d)) == 1 else "x".join(map(str, d)) for d in self.patch_dilation
        )
        patched = any(kind in self.kinds for kind in PATCHED)
        patch = f" {self.patch_size}^3 dilation {dilations}" if patched else ""
        return "+".join(self.kinds) + patch


def context_columns(
    maps: dict[str, np.ndarray],
    features: Sequence[str],
    inside: np.ndarray,
    affine: np.ndarray,
    context: str | Sequence[str] | None,
    patch_size: int = 3,
    brain_mask: np.ndarray | None = None,
    where: str | Path = "brain mask",
    patch_dilation=1,
) -> np.ndarray:
    """The context columns (N, K) float32 for the voxels in `inside` (K = 0 without context)."""
    parsed = parse_context(context)
    parts = []
    if "coords" in parsed:
        coords = brain_coords(affine, brain_mask, where)
        parts.append(coords[:, inside].T)
    if "patch" in parsed:
        volumes = np.stack([maps[f] for f in features])
        volumes = np.where(np.isfinite(volumes), volumes, 0.0).astype(np.float32)
        parts.append(patch_columns(volumes, inside, affine, patch_size, patch_dilation))
    if not parts:
        return np.zeros((int(inside.sum()), 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
