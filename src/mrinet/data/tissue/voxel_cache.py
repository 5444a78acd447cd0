"""The simulated cohort's class voxels, extracted once into an uncompressed .npz beside it.

Keyed by features, classes and label map (and the spatial context): ~20 ms instead of ~1 s of
gzip NIfTI reads at every start. Only for the cohort mrinet generated; real data folders stay
untouched. With autocontext the columns also depend on the first stage's weights: one cache per
settings holds the newest first stage's (its key inside; another first stage rebuilds and
replaces it), so retraining the first stage does not leave a ~2 GB file per model. A corrupt,
truncated or other version's cache is warned about, deleted and rebuilt (mrinet.io.integrity).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from mrinet.data.tissue.context import ContextSpec
from mrinet.data.tissue.reader import SubjectReader
from mrinet.data.tissue.subjects import SubjectCodes, Voxels, load_subjects
from mrinet.io.atomic import atomic_file
from mrinet.io.integrity import read_npz_cache
from mrinet.io.locks import cache_lock

log = logging.getLogger(__name__)

# the voxel cache's layout (mrinet.io.integrity): another tag is another version's, rebuilt
VOXEL_CACHE_FORMAT = "voxels-2"


def cache_path(root: Path, reader: SubjectReader, context: ContextSpec) -> Path:
    """The cache file of these settings (voxel-only caches keep the key they had before context)."""
    parts = [reader.features, reader.classes, reader.label_map, reader.label_file]
    if context.kinds:
        parts.append([list(context.kinds), context.patch_size, context.dilation_setting])
    key = json.dumps(parts, sort_keys=True)
    return root / f".voxels-{hashlib.sha1(key.encode()).hexdigest()[:10]}.npz"


def cached_synthetic_voxels(reader: SubjectReader, context: ContextSpec) -> Voxels:
    """The cohort's voxels from the cache, built (under a lock) when it is missing or stale."""
    root = reader.root()
    cache = cache_path(root, reader, context)
    with cache_lock(cache):
        return _voxels_npz(root, cache, reader, context)


def _voxels_npz(root: Path, cache: Path, reader: SubjectReader, context: ContextSpec) -> Voxels:
    model_key = context.model.key if context.model is not None else ""
    saved = read_npz_cache(cache, VOXEL_CACHE_FORMAT, ("features", "labels", "codes", "names"))
    if saved is not None:
        saved_key = str(saved["model_key"]) if "model_key" in saved else ""
        if saved_key == model_key:
            subjects = SubjectCodes(saved["codes"], saved["names"])
            return Voxels(saved["features"], saved["labels"], subjects)
        log.info("voxel cache %s holds another first stage's columns: rebuilding it", cache)
    voxels = load_subjects(
        root, reader.features, reader.classes, reader.label_map, reader.label_file, context=context
    )
    with atomic_file(cache) as tmp, open(tmp, "wb") as handle:
        names = np.asarray(voxels.subjects.categories, dtype=str)
        np.savez(
            handle,
            features=voxels.features,
            labels=voxels.labels,
            codes=voxels.subjects.codes,
            names=names,
            cache_format=np.asarray(VOXEL_CACHE_FORMAT),
            **({"model_key": np.asarray(model_key)} if model_key else {}),
        )
    return voxels
