"""The model's input columns as records: which map (a feature, a coordinate, a first-stage
log-probability) at which voxel offset (dR, dA, dS along the world axes).

A `Column` is its own name (`FA[+3,-3,+0]`: FA 3 voxels to the right and 3 posterior), so it
prints, compares and logs as the string, while code that needs the parts (the left-right
mirror) reads `.source` and `.offset` instead of parsing the name back. Also the validation of
`data.context`, `data.patch_size` and `data.patch_dilation`. Plain values, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mrinet.errors import ConfigError

CONTEXTS = ("coords", "patch", "autocontext")
PATCHED = ("patch", "autocontext")  # the kinds that read data.patch_size / data.patch_dilation
COORD_NAMES = ("coord_R", "coord_A", "coord_S")

Offset = tuple[int, int, int]


class Column(str):
    """One input column: map `source` at voxel `offset` (None: the voxel itself)."""

    source: str
    offset: Offset | None

    def __new__(cls, source: str, offset: Offset | None = None) -> Column:
        name = (
            source if offset is None else f"{source}[{offset[0]:+d},{offset[1]:+d},{offset[2]:+d}]"
        )
        column = super().__new__(cls, name)
        column.source, column.offset = str(source), None if offset is None else tuple(offset)
        return column

    def __reduce__(self):
        return (Column, (self.source, self.offset))

    def mirrored(self) -> Column:
        """The same column of the subject flipped about its midline (dR negated)."""
        if self.offset is None:
            return self
        dr, da, ds = self.offset
        return Column(self.source, (-dr, da, ds))


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


def input_columns(
    features: Sequence[str],
    context: str | Sequence[str] | None = None,
    patch_size: int = 3,
    patch_dilation=1,
    stage_classes: Sequence[str] = (),
) -> list[Column]:
    """The model's input columns: the voxel's features, then coords, then each feature's
    neighbours, all patches of `data.patch_dilation` one after another (`neighbour_offsets`);
    with autocontext then the first stage's log-probabilities (`logp_thalamus`) and their
    neighbours in the same order."""
    columns = [Column(f) for f in features]
    parsed = parse_context(context)
    if "coords" in parsed:
        columns += [Column(name) for name in COORD_NAMES]
    offsets = []
    if any(kind in parsed for kind in PATCHED):
        offsets = neighbour_offsets(check_patch_size(patch_size), patch_dilation)
    if "patch" in parsed:
        columns += [Column(f, o) for f in features for o in offsets]
    if "autocontext" in parsed:
        maps = [f"logp_{name}" for name in stage_classes]
        columns += [Column(m) for m in maps] + [Column(m, o) for m in maps for o in offsets]
    return columns


def mirror_columns(columns: Sequence[Column]) -> tuple[np.ndarray, np.ndarray]:
    """Column order and signs (both (K,)) that mirror inputs left-right: x[:, order] * sign is
    what the same voxel of the subject flipped about its midline would have (coord_R negated,
    `FA[+1,..]` read from `FA[-1,..]`). Every patch is symmetric in R, so each mirror exists.
    `columns`: `input_columns` records (a plain name is a column at the voxel itself)."""
    columns = [c if isinstance(c, Column) else Column(str(c)) for c in columns]
    index = {(c.source, c.offset): i for i, c in enumerate(columns)}
    order, sign = np.arange(len(columns)), np.ones(len(columns), dtype=np.float32)
    for i, column in enumerate(columns):
        if column.source == "coord_R":
            sign[i] = -1.0
        elif column.offset is not None:
            mirror = column.mirrored()
            order[i] = index[(mirror.source, mirror.offset)]
    return order, sign
