"""Every file mrinet reads is read as data: no unpickling, no eval, no unsafe YAML anywhere.

A source scan (so a new reader cannot slip in unnoticed) and the real readers given files
that would run code if they were read the unsafe way.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mrinet"
UNSAFE = {
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "pickle.load": re.compile(r"\bpickle\.loads?\("),
    "yaml.load (not safe_load)": re.compile(r"\byaml\.(unsafe_)?load\("),
    "builtin eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only=True)"),
}


def test_no_reader_in_mrinet_can_run_code():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if '"""' in line or code.strip().startswith(("'", '"')):
                continue  # docstrings may name what is not done
            for what, pattern in UNSAFE.items():
                if pattern.search(code):
                    found.append(f"{path.relative_to(SRC)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_voxel_cache_holding_a_pickle_is_rebuilt_not_unpickled(tmp_path, caplog):
    """An .npz whose array is a pickled object (what allow_pickle=True would run)."""
    from mrinet.io.integrity import read_npz_cache

    marker = tmp_path / "ran"
    cache = tmp_path / ".voxels-0123456789.npz"
    objects = np.empty(1, dtype=object)
    objects[0] = Payload(marker)
    with open(cache, "wb") as handle:
        np.savez(handle, features=objects, cache_format=np.asarray("voxels-2"))
    assert read_npz_cache(cache, "voxels-2") is None
    assert not marker.exists() and not cache.exists()
    assert str(cache) in caplog.text


@pytest.mark.parametrize("where", ["job.json", "manifest"])
def test_json_records_are_read_as_plain_data(tmp_path, where):
    """job.json and cache manifests are JSON: a `_target_` in them is a string, never called."""
    marker = tmp_path / "ran"
    hostile = {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}
    if where == "job.json":
        from mrinet.run.sweep import collect_jobs

        job = tmp_path / "sweep" / "0"
        job.mkdir(parents=True)
        record = {"job": 0, "overrides": [], "status": "ok", "run_dir": str(job), **hostile}
        (job / "job.json").write_text(json.dumps(record))
        (row,) = collect_jobs(tmp_path / "sweep")
        assert row["_target_"] == "pathlib.Path.touch"
    else:
        from mrinet.io.integrity import MANIFEST, manifest_problems

        (tmp_path / MANIFEST).write_text(json.dumps({"format": 1, "files": hostile}))
        assert manifest_problems(tmp_path) is None  # not a manifest of ours: rebuilt
        pickle_file = tmp_path / MANIFEST
        pickle_file.write_bytes(pickle.dumps(Payload(marker)))
        assert manifest_problems(tmp_path) is None  # not JSON: no manifest, rebuilt
    assert not marker.exists()
