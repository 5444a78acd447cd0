"""The lab's own format: one `<subject>.npz` per subject with 3-D maps and a class volume.

Arrays: one float32 (X, Y, Z) array per map (e.g. T1w, FA, MD in um^2/ms, and SbS0, the
powder-averaged diffusion-weighted signal over b=0: the extra map mrinet's own DTI data has
not), `classes` int16 (X, Y, Z) (index into `class_names`, -1: no class), `class_names`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CLASS_NAMES = ("thalamus", "corpus_callosum", "cortical_wm")
# FreeSurfer aparc+aseg codes of each class
LABEL_CODES = {
    "thalamus": (10, 49),
    "corpus_callosum": (251, 252, 253, 254, 255),
    "cortical_wm": (2, 41),
}


def write_subject(path: str | Path, maps: dict[str, np.ndarray], classes: np.ndarray) -> Path:
    """Write one subject (written to a temporary name, then renamed: never a half file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part.npz")
    arrays = {name: np.asarray(m, dtype=np.float32) for name, m in maps.items()}
    np.savez(tmp, classes=classes.astype(np.int16), class_names=np.array(CLASS_NAMES), **arrays)
    os.replace(tmp, path)
    return path


def read_subject(
    path: str | Path, features: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """(maps by feature name, class volume, class names) of one subject file."""
    with np.load(path) as data:
        missing = [f for f in features if f not in data.files]
        if missing:
            raise KeyError(
                f"{path}: no map {missing[0]!r} (maps: {sorted(set(data.files) - {'classes', 'class_names'})})"
            )
        maps = {f: data[f].astype(np.float32) for f in features}
        return maps, data["classes"].astype(np.int64), [str(c) for c in data["class_names"]]
