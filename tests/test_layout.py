"""The tests mirror the packages: every test folder is a package of src/mrinet or a named suite,
and no test module imports another test module (shared helpers live in tests/helpers.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT

TESTS = ROOT / "tests"
PACKAGE = ROOT / "src" / "mrinet"
# suites across packages (end to end, faults, the cluster, the sweeper plugin, the examples,
# the scripts/ folder), and checkpoint files written by earlier versions
SUITES = {"e2e", "reliability", "slurm", "sweep", "examples", "scripts", "fixtures"}
# a suite's own helper module, imported by that suite's tests only (conftest.py puts it on
# sys.path); scripts the tests run in a subprocess
SUITE_HELPERS = {"slurm/slurm_helpers.py", "sweep/toy_app.py", "e2e/save_hpc_at.py"}


def code_folders() -> list[Path]:
    """Every folder under tests/ holding Python files, but the checkpoint fixtures."""
    folders = {p.parent for p in code_files()}
    return sorted(f for f in folders if f != TESTS and "fixtures" not in f.relative_to(TESTS).parts)


def code_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_test_folder_mirrors_a_package_or_is_a_named_suite():
    strays = []
    for folder in code_folders():
        rel = folder.relative_to(TESTS)
        if rel.parts[0] not in SUITES and not (PACKAGE / rel).is_dir():
            strays.append(rel.as_posix())
    assert not strays, (
        f"test folders with no package of the same path under src/mrinet: {strays}; "
        "move them to the package they test, or name a new suite in SUITES"
    )


# the only files directly under tests/: checks over the whole project, the shared helpers
TOP_LEVEL = {"conftest.py", "helpers.py", "test_architecture.py", "test_doc_commands.py",
             "test_layout.py"}  # fmt: skip


def test_only_whole_project_checks_sit_directly_under_tests():
    loose = sorted(p.name for p in TESTS.glob("*.py") if p.name not in TOP_LEVEL)
    assert not loose, (
        f"test files directly under tests/: {loose}; move each to the folder of the package "
        "it tests (tests/<package>/...), or name it in TOP_LEVEL if it checks the whole project"
    )


LOADERS = {"spec_from_file_location", "import_module", "run_path", "__import__"}


def imported_test_modules(source: str, rel: str) -> list[str]:
    """The test modules, conftest files and other suites' helpers that the file `rel` (its
    path under tests/) imports: import statements, importlib/runpy calls, `-c` code strings."""
    stems = {p.stem for p in code_files() if p.name != "helpers.py"} | {"conftest"}
    own = {Path(h).stem for h in SUITE_HELPERS if h.split("/")[0] == rel.split("/")[0]}
    found = []
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [f"{'.' * node.level}{node.module or ''}"]
        elif isinstance(node, ast.Call) and (
            getattr(node.func, "attr", None) in LOADERS or getattr(node.func, "id", None) in LOADERS
        ):
            # a test file loaded by its name or path: its stem is a word of the arguments
            words = set(re.findall(r"\w+", " ".join(ast.unparse(a) for a in node.args)))
            modules = sorted(words & (stems - own))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # code run with `python -c`: its import lines
            modules = re.findall(r"^\s*(?:from|import)\s+(tests\.[\w.]+)", node.value, re.M)
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if module.startswith("."):  # a relative import: another file of tests/
                found.append(module)
            elif parts[0] == "tests" and module != "tests.helpers":
                found.append(module)
            elif parts[-1] in stems - own and parts[0] != "mrinet":
                found.append(module)
    return found


def test_no_test_module_imports_another():
    offenders = {}
    for path in code_files():
        rel = path.relative_to(TESTS).as_posix()
        if rel in ("helpers.py", "test_layout.py"):  # the shared module; the probes below
            continue
        if found := imported_test_modules(path.read_text(), rel):
            offenders[rel] = found
    assert not offenders, (
        f"test files importing other test files: {offenders}; "
        "move what they share to tests/helpers.py (or a fixture in conftest.py)"
    )


def test_the_import_check_finds_each_way_of_importing_a_test_module():
    """The check above can fail: each way one test file can reach another is found, and
    tests.helpers, mrinet and a suite's own helper are not."""
    cases = {
        "from tests.e2e.test_train_dti import TINY\n": ["tests.e2e.test_train_dti"],
        "from tests.conftest import train_run\n": ["tests.conftest"],
        "import test_configs\n": ["test_configs"],
        "from .test_dice import x\n": [".test_dice"],
        "s = spec_from_file_location('x', HERE / 'test_train_dti.py')\n": ["test_train_dti"],
        "m = importlib.import_module('test_commands')\n": ["test_commands"],
        "CODE = 'import sys\\nfrom tests.reliability.test_checkpoints import compose'\n": [
            "tests.reliability.test_checkpoints"
        ],
        "from slurm_helpers import TINY\n": ["slurm_helpers"],
        "from tests.helpers import ROOT\nfrom mrinet.models import metrics\n": [],
        "'see tests/e2e/test_train_dti.py'\n": [],
    }
    for code, expected in cases.items():
        assert imported_test_modules(code, "models/test_probe.py") == expected, code
    assert imported_test_modules("from slurm_helpers import TINY\n", "slurm/test_x.py") == []
