"""mrinet.cli: every console script resolves, the old `python -m` paths still run, and a
MrinetError ends a command with one message and exit status 1."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from mrinet.cli import exit_with
from mrinet.errors import ConfigError

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_targets_exist(name):
    module, _, attr = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_every_cli_module_is_a_console_script():
    commands = {p.stem for p in (ROOT / "src" / "mrinet" / "cli").glob("*.py")} - {"__init__"}
    targets = {target.split(":")[0] for target in SCRIPTS.values()}
    assert {f"mrinet.cli.{c}" for c in commands} <= targets


@pytest.mark.parametrize(
    ("module", "flag"),
    [
        ("mrinet.reconstruct", "--center-fraction"),
        ("mrinet.sim.dti_dataset", "--subjects"),
        ("mrinet.sim.kspace_dataset", "--coils"),
        ("mrinet.nets.gradcheck", "--tol-finite-diff"),
        ("mrinet.slurm.reconstruct_array", "--shards"),
    ],
)
def test_old_module_paths_still_run_the_command(module, flag):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert flag in proc.stdout


def test_exit_with_turns_a_mrinet_error_into_one_message():
    def fails():
        raise ConfigError("bad acceleration", "acceleration", "use 4")

    with pytest.raises(SystemExit) as info:
        exit_with(fails)
    assert str(info.value.code).startswith("mrinet: ConfigError: bad acceleration")
    with pytest.raises(SystemExit) as info:
        exit_with(fails, prefix="error")
    assert str(info.value.code).startswith("error: bad acceleration")


def test_exit_with_passes_an_int_status_and_treats_other_results_as_success():
    with pytest.raises(SystemExit) as info:
        exit_with(lambda: 3)
    assert info.value.code == 3
    with pytest.raises(SystemExit) as info:
        exit_with(lambda: {"pics_R4": []})
    assert info.value.code == 0
