"""train, eval and predict live in mrinet.cli: both `python -m mrinet.cli.<name>` and the old
`python -m mrinet.<name>` find the packaged configs from any folder, and the old module is the
new one's shim (the same functions, so code written against either sees one command)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize(
    ("module", "first_line"),
    [
        ("mrinet.train", "task_name: train"),
        ("mrinet.cli.eval", "task_name: eval"),
        ("mrinet.predict", "paths:"),
    ],
)
def test_hydra_commands_find_their_configs_from_any_folder(module, first_line, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--cfg", "job"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == first_line


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("mrinet.train", ["main", "train", "run_info", "resolve_ckpt_path"]),
        ("mrinet.eval", ["main", "evaluate", "check_data_overrides"]),
        ("mrinet.predict", ["main", "predict", "predict_subject", "dice_against_labels"]),
    ],
)
def test_old_module_is_a_shim_of_the_cli_module(old, names):
    shim = importlib.import_module(old)
    command = importlib.import_module(old.replace("mrinet.", "mrinet.cli.", 1))
    for name in names:
        assert getattr(shim, name) is getattr(command, name)
    assert set(shim.__all__) <= set(vars(command))
