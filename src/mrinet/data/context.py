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
  data/autocontext.py), as log-probabilities at the voxel and in the same patches: the second
  stage sees the shape of the first one's map around it (Tu & Bai's auto-context).
`mirror_columns` gives the left-right mirror image of a row of inputs.
Lightning-free: plain arrays in, arrays out, usable from a notebook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError

CONTEXTS = ("coords", "patch", "autocontext")
PATCHED = ("patch", "autocontext")  # the kinds that read data.patch_size / data.patch_dilation
COORD_NAMES = ("coord_R", "coord_A", "coord_S")


@dataclass(frozen=True)
class ContextSpec:
    """Which spatial context a model's inputs carry (`data.context`, `data.patch_size`,
    `data.patch_dilation`), validated once; `kinds` is () for the lecture's voxel-only x."""

    kinds: tuple[str, ...] = ()
    patch_size: int = 3
    patch_dilation: tuple[tuple[int, int, int], ...] = ((1, 1, 1),)  # (dR, dA, dS) per patch
    # `autocontext`: the first-stage classifier (data/autocontext.py ContextModel)
    model: object | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(
        cls, context=None, patch_size: int = 3, patch_dilation=1, context_model=None
    ) -> ContextSpec:
        """`context_model`: a first-stage checkpoint's path, or the checkpoint itself (the copy a
        second-stage checkpoint carries), for `autocontext`; refused without it."""
        kinds = parse_context(context)
        dilations = ((1, 1, 1),)
        if any(kind in kinds for kind in PATCHED):
            check_patch_size(patch_size)
            dilations = parse_dilations(patch_dilation)
        model = None
        if "autocontext" in kinds:
            from mrinet.data.autocontext import ContextModel

            model = ContextModel.load(context_model)
        elif context_model not in (None, "", "null"):
            raise ConfigError(
                f"data.context_model is set ({str(context_model)[:200]}) but data.context="
                f"{list(kinds) or 'none'} does not use it",
                "data.context_model",
                "add autocontext to data.context (e.g. data.context=[coords,patch,autocontext]) "
                "or drop data.context_model",
            )
        return cls(kinds, int(patch_size), dilations, model)

    @classmethod
    def from_data_config(cls, data_cfg: dict, embedded: dict | None = None) -> ContextSpec:
        """The context recorded in a checkpoint's data settings; `embedded`, the first-stage
        checkpoint the second stage carries, stands in for the recorded path (which may be gone)."""
        return cls.from_config(
            data_cfg.get("context", "none"),
            data_cfg.get("patch_size", 3),
            data_cfg.get("patch_dilation", 1),
            embedded if embedded is not None else data_cfg.get("context_model"),
        )

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

    def feature_names(self, features: Sequence[str]) -> list[str]:
        return context_feature_names(
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


def parse_context(context: str | Sequence[str] | None) -> tuple[str, ...]:
    """`none`/None/[] -> (); `coords`, `patch` or a list of them -> a sorted tuple (validated)."""
    if context is None or context == "none":
        return ()
    items = [context] if isinstance(context, str) else list(context)
    items = [str(c) for c in items if str(c) != "none"]
    unknown = sorted(set(items) - set(CONTEXTS))
    if unknown:
        raise ConfigError(
            f"unknown spatial context {unknown} (known: none, {', '.join(CONTEXTS)})",
            "data.context",
            "e.g. data.context=none, data.context=coords or data.context=[coords,patch]",
        )
    return tuple(c for c in CONTEXTS if c in items)


def check_patch_size(patch_size: int, shape: Sequence[int] | None = None, where: str = "") -> int:
    """A patch has a centre voxel (odd k >= 1) and fits inside the volume."""
    k = int(patch_size)
    if k < 1 or k % 2 == 0:
        raise ConfigError(
            f"data.patch_size={patch_size} must be an odd number >= 1 (the voxel sits at the centre)",
            "data.patch_size",
            "use data.patch_size=3 (or 5)",
        )
    if shape is not None and k > min(int(n) for n in shape):
        raise ConfigError(
            f"data.patch_size={k} is larger than the volume {tuple(int(n) for n in shape)}"
            + (f" of {where}" if where else ""),
            "data.patch_size",
            f"use a patch size of at most {min(int(n) for n in shape)} (e.g. 3)",
        )
    return k


def parse_dilations(patch_dilation) -> tuple[tuple[int, int, int], ...]:
    """`data.patch_dilation` -> one (dR, dA, dS) per patch: 3 or [3] -> ((3, 3, 3),);
    [1, 3] -> two patches; [1, [1, 1, 3]] adds a patch 1 voxel apart along R and A but 3 along S
    (fine left-right detail several mm above and below: the midline's fissure and septum).
    Each dilation an integer >= 1 (voxels between neighbours), no repeats, at least one."""
    fix = (
        "e.g. data.patch_dilation=3 (one patch), data.patch_dilation=[1,3] (one patch per "
        "dilation) or data.patch_dilation=[1,[1,1,3]] (per world axis R, A, S: nest the triple)"
    )
    values = [patch_dilation] if _is_scalar(patch_dilation) else list(patch_dilation)
    if not values:
        raise ConfigError("data.patch_dilation is an empty list", "data.patch_dilation", fix)
    dilations = []
    for value in values:
        axes = [value] * 3 if _is_scalar(value) else list(value)
        if len(axes) != 3 or not all(_is_dilation(d) for d in axes):
            raise ConfigError(
                f"data.patch_dilation={patch_dilation}: {value!r} is not an integer >= 1 "
                "(nor three of them, one per world axis R, A, S)",
                "data.patch_dilation",
                fix,
            )
        dilations.append(tuple(int(d) for d in axes))
    if len(set(dilations)) != len(dilations):
        raise ConfigError(
            f"data.patch_dilation={patch_dilation} repeats a dilation (the same patch twice)",
            "data.patch_dilation",
            fix,
        )
    return tuple(dilations)


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bytes)) or not isinstance(value, Iterable)


def _is_dilation(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def patch_offsets(patch_size: int) -> list[tuple[int, int, int]]:
    """(dR, dA, dS) neighbour offsets of a k x k x k patch, centre left out, in C order."""
    r = int(patch_size) // 2
    rng = range(-r, r + 1)
    return [(a, b, c) for a in rng for b in rng for c in rng if (a, b, c) != (0, 0, 0)]


def neighbour_offsets(patch_size: int, dilations) -> list[tuple[int, int, int]]:
    """(dR, dA, dS) voxel offsets of every patch in `data.patch_dilation` order, each patch in C
    order; an offset an earlier patch already has ([1, [1, 1, 3]] share the S = 0 plane) is
    left out, so no column repeats another."""
    offsets: dict[tuple[int, int, int], None] = {}
    for dr, da, ds in parse_dilations(dilations):
        for a, b, c in patch_offsets(patch_size):
            offsets.setdefault((a * dr, b * da, c * ds))
    return list(offsets)


def context_feature_names(
    features: Sequence[str],
    context: str | Sequence[str] | None = None,
    patch_size: int = 3,
    patch_dilation=1,
    stage_classes: Sequence[str] = (),
) -> list[str]:
    """Column names of the model's inputs: the voxel's features, then coords, then each
    feature's neighbours (`FA[+3,-3,+0]`: FA 3 voxels to the right and 3 posterior), all patches
    of `data.patch_dilation` one after another (`neighbour_offsets`); with autocontext then the
    first stage's log-probabilities (`logp_thalamus`) and their neighbours in the same order."""
    names = list(features)
    parsed = parse_context(context)
    if "coords" in parsed:
        names += list(COORD_NAMES)
    offsets = []
    if any(kind in parsed for kind in PATCHED):
        offsets = neighbour_offsets(check_patch_size(patch_size), patch_dilation)
    if "patch" in parsed:
        names += [f"{f}[{a:+d},{b:+d},{c:+d}]" for f in features for a, b, c in offsets]
    if "autocontext" in parsed:
        maps = [f"logp_{name}" for name in stage_classes]
        names += maps + [f"{m}[{a:+d},{b:+d},{c:+d}]" for m in maps for a, b, c in offsets]
    return names


def mirror_columns(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Column order and signs (both (K,)) that mirror inputs left-right: x[:, order] * sign is
    what the same voxel of the subject flipped about its midline would have (coord_R negated,
    `FA[+1,..]` read from `FA[-1,..]`). Every patch is symmetric in R, so each mirror exists."""
    index = {name: i for i, name in enumerate(names)}
    order, sign = np.arange(len(names)), np.ones(len(names), dtype=np.float32)
    for i, name in enumerate(names):
        if name == "coord_R":
            sign[i] = -1.0
        elif name.endswith("]") and "[" in name:
            feature, offset = name[:-1].split("[")
            dr, rest = offset.split(",", 1)
            order[i] = index[f"{feature}[{-int(dr):+d},{rest}]"]
    return order, sign


def world_axes(affine: np.ndarray) -> tuple[list[int], list[bool]]:
    """For each world axis (R, A, S): the array axis closest to it and whether it runs backwards."""
    rot = np.asarray(affine, dtype=np.float64)[:3, :3]
    order = [int(np.argmax(np.abs(rot[w]))) for w in range(3)]
    if sorted(order) != [0, 1, 2]:  # oblique: fall back to nibabel's optimal assignment
        import nibabel as nib

        ornt = nib.orientations.io_orientation(affine)  # array axis -> (world axis, sign)
        order = [int(np.flatnonzero(ornt[:, 0] == w)[0]) for w in range(3)]
    flips = [bool(rot[w, order[w]] < 0) for w in range(3)]
    return order, flips


def brain_coords(
    affine: np.ndarray, brain_mask: np.ndarray | None, where: str | Path = "brain mask"
) -> np.ndarray:
    """Brain-normalised coordinates (3, X, Y, Z) float32 along the brain's own R, A, S axes.

    World positions (affine, mm) relative to the brain mask's centre, projected on the mask's
    principal axes (`brain_axes`) and divided by its spread along each: coordinates transfer
    across subjects, head sizes and tilts, and scanners' storage conventions.
    """
    if brain_mask is None:
        raise DataNotFoundError(
            "spatial context `coords` needs a brain mask and there is none",
            where,
            "add nodif_brain_mask.nii.gz to the subject folder (FSL bet), or set data.context=none",
        )
    mask = np.asarray(brain_mask) > 0
    if mask.ndim != 3 or mask.sum() < 2:
        raise DataFormatError(
            f"brain mask is empty ({int(mask.sum())} voxel(s) inside, shape {mask.shape})",
            where,
            "give a brain mask with the brain set to 1 (e.g. FSL bet -m), or set data.context=none",
        )
    affine = np.asarray(affine, dtype=np.float64)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in mask.shape), indexing="ij")
    world = np.stack(
        [sum(affine[a, b] * grids[b] for b in range(3)) + affine[a, 3] for a in range(3)]
    )
    inside = world[:, mask]  # (3, M) mm
    centre = inside.mean(1)
    axes, spread = brain_axes(inside - centre[:, None])
    local = np.einsum("wa,w...->a...", axes, world - centre[:, None, None, None])
    return (local / spread[:, None, None, None]).astype(np.float32)


def brain_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (3, 3; column a = brain axis a) and spreads (3,) of centred (3, M) points.

    Column a is the principal axis closest to world axis a (R, A, S), signed to point along it:
    the frame turns with the head (a tilted head gives the same coordinates), yet keeps RAS
    meaning, so the midline is coordinate 0 of axis R however the head sits in the scanner.
    """
    cov = points @ points.T / max(points.shape[1], 1)
    values, vectors = np.linalg.eigh(cov)
    order = [int(np.argmax(np.abs(vectors[w]) * (1 + 1e-9 * np.arange(3)))) for w in range(3)]
    if sorted(order) != [0, 1, 2]:  # near-spherical: keep the world axes
        return np.eye(3), np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    axes = vectors[:, order]
    axes *= np.sign(np.diag(axes))[None, :]
    return axes, np.sqrt(np.clip(values[order], 1e-12, None))


def patch_columns(
    volumes: np.ndarray,
    inside: np.ndarray,
    affine: np.ndarray,
    patch_size: int,
    dilation=1,
):
    """Neighbours of each voxel in `inside` -> (N, F * M) float32, in context_feature_names
    order (per feature, its M = len(neighbour_offsets) neighbours).

    volumes: (F, X, Y, Z) feature maps; inside: (X, Y, Z) bool; neighbours `dilation` voxels
    apart (2: a 3^3 patch spans 5^3 voxels at the cost of 3^3), or several patches
    (`parse_dilations`). The volumes are reoriented to the world axes, zero-padded (background
    is 0) for the widest patch, and every (voxel, neighbour) pair of every patch is read with
    one gather at flat index centre + offset (no per-voxel Python; ~0.1 s per 120k-voxel
    subject and 26 neighbours).
    """
    import torch

    k = check_patch_size(patch_size, volumes.shape[1:])
    offsets = neighbour_offsets(k, dilation)
    order, flips = world_axes(affine)
    vol = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))
    idx = torch.from_numpy(np.argwhere(inside))  # (N, 3) array indices
    vol = vol.permute(0, *(1 + a for a in order))
    idx = idx[:, order]
    shape = torch.tensor(vol.shape[1:])
    for w in range(3):
        if flips[w]:
            vol = vol.flip(1 + w)
            idx[:, w] = shape[w] - 1 - idx[:, w]
    r = [max((abs(o[w]) for o in offsets), default=0) for w in range(3)]  # reach along R, A, S
    padded = torch.nn.functional.pad(vol, (r[2], r[2], r[1], r[1], r[0], r[0]))
    _, _, py, pz = padded.shape
    # neighbour offsets as flat strides of the padded volume
    steps = torch.tensor([a * py * pz + b * pz + c for a, b, c in offsets], dtype=torch.int64)
    centre = ((idx[:, 0] + r[0]) * py + (idx[:, 1] + r[1])) * pz + (idx[:, 2] + r[2])  # (N,)
    flat = padded.reshape(vol.shape[0], -1)
    gathered = flat[:, centre[:, None] + steps[None, :]]  # (F, N, M): one gather
    return gathered.permute(1, 0, 2).reshape(len(idx), -1).numpy()


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
