"""Fibre orientations of the anatomical phantom from its anatomy (callosum, corticospinal tract,
brain stem, cingulum) and a smooth random field elsewhere."""

from __future__ import annotations

import numpy as np

from mrinet.sim.anatomy.atlas import CALLOSAL_HALF_WIDTH_MM, Atlas


def fibre_orientations(
    atlas: Atlas, template: np.ndarray, linear: np.ndarray, default: np.ndarray
) -> dict[str, np.ndarray]:
    """Unit fibre directions (3, V) per tissue at points of template mm `template` (3, V), in
    subject space (through `linear`). `default` (3, V): a smooth random field, used where the
    anatomy dictates nothing (cortex, deep grey matter, most white matter)."""
    x, y, z = (np.asarray(t, dtype=np.float64) for t in template)
    arc_z = np.interp(y, atlas.arc_y, atlas.arc_z)
    slope = np.interp(y, atlas.arc_y, atlas.arc_slope)
    # callosum: left-right, tilting with distance from the midline along the arc's normal
    # (up in the body, forward-up at the genu, back-up at the splenium), as the radiations fan
    norm = np.sqrt(1.0 + slope**2)
    tilt = 0.8 * np.clip(np.abs(x) / CALLOSAL_HALF_WIDTH_MM, 0.0, 1.0)
    cc = np.stack([np.where(x < 0, -1.0, 1.0), tilt * -slope / norm, tilt / norm])
    # corticospinal tract: internal capsule to the motor cortex, superior-inferior
    ax = np.abs(x)
    cst_zone = (ax >= 8) & (ax <= 34) & (y >= -38) & (y <= -4) & (z >= -12) & (z <= 62)
    cst = np.stack([np.sign(x) * 0.25, np.full_like(x, -0.1), np.ones_like(x)])
    # cingulum: just above the callosum beside the midline, along the arc
    y_lo, y_hi = atlas.arc_y[0] - 5.0, atlas.arc_y[-1] + 5.0
    height = z - arc_z
    cing_zone = (ax >= 3) & (ax <= 13) & (height >= 3) & (height <= 14) & (y >= y_lo) & (y <= y_hi)
    cing = np.stack([np.zeros_like(x), 1.0 / norm, slope / norm])
    wm = np.asarray(default, dtype=np.float64).copy()
    wm[:, cst_zone] = cst[:, cst_zone]
    wm[:, cing_zone] = cing[:, cing_zone]
    brainstem = np.repeat(np.array([[0.0], [0.4], [1.0]]), x.size, axis=1)
    out = {"cc": cc, "wm": wm, "brainstem": brainstem}
    out = {k: linear @ v for k, v in out.items()}
    out["default"] = linear @ np.asarray(default, dtype=np.float64)
    return {
        k: v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-12) for k, v in out.items()
    }
