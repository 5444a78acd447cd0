"""Every command line shown in README.md and docs/ still works as written.

Hydra commands (train, eval, predict, export) are composed with their overrides exactly as a
user would type them (a sweep override contributes each of its values), so a renamed key, group
or experiment breaks this test, not a user's first try. `make` targets must exist, `python -m`
modules must be importable by name and `python scripts/x.py` files must exist.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from mrinet.run.config_dir import config_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_CONFIGS = [
    ROOT / "examples" / "own_net" / "mynets" / "configs",
    ROOT / "examples" / "own_data" / "labvoxels" / "configs",
]
# [project.scripts] of pyproject.toml (read by pattern: tomllib needs Python 3.11)
SCRIPTS = dict(
    re.findall(r'^(mrinet-[\w-]+) = "([\w.:]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
)
HYDRA_COMMANDS = {"train": "train", "eval": "eval", "predict": "predict", "export": "export"}
PLACEHOLDER = re.compile(r"<[^>]+>|\.\.\.|^[A-Z_]+$|=[A-Z_]+$|=[A-Z_]+/")


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every line in an indented or fenced code block, with
    backslash continuations joined."""
    out: list[tuple[int, str]] = []
    fenced, pending, start = False, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or raw.startswith("    ")) and not pending:
            continue
        text = pending + " " + stripped if pending else stripped
        start = start if pending else number
        if text.endswith("\\"):
            pending = text[:-1]
            continue
        pending = ""
        out.append((start, text))
    return out


def commands() -> list[tuple[str, list[str]]]:
    """(where, tokens) of every mrinet, make or scripts command in the docs."""
    found = []
    for path in DOCS:
        for number, text in code_lines(path):
            try:
                tokens = shlex.split(text, comments=True)
            except ValueError:
                continue
            if not tokens:
                continue
            if tokens[0] == "python" and len(tokens) > 1:
                if tokens[1] == "-m" and len(tokens) > 2 and tokens[2].startswith("mrinet"):
                    found.append((f"{path.name}:{number}", tokens[2:]))
                elif tokens[1].startswith("scripts/"):
                    found.append((f"{path.name}:{number}", tokens[1:]))
            elif tokens[0].startswith("mrinet-"):
                found.append((f"{path.name}:{number}", tokens))
            elif tokens[0] == "make" and len(tokens) > 1:
                found.append((f"{path.name}:{number}", tokens))
    return found


COMMANDS = commands()


def path_of(where: str) -> str:
    return where.rsplit(":", 1)[0]


def first_values(overrides: list[str]) -> list[list[str]]:
    """The override lists a multirun line expands to, one per value of each sweep (zipped: a
    sweep of n values gives n lists, the other sweeps cycling), enough to compose each value."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = {}
    for i, override in enumerate(parsed):
        if override.is_sweep_override():
            sweeps[i] = list(override.sweep_string_iterator())
    rounds = max((len(v) for v in sweeps.values()), default=1)
    out = []
    for r in range(rounds):
        items = []
        for i, override in enumerate(parsed):
            if i in sweeps:
                value = sweeps[i][r % len(sweeps[i])]
                items.append(f"{override.get_key_element()}={value}")
            else:
                items.append(overrides[i])
        out.append(items)
    return out


def test_the_docs_show_commands():
    modules = {tokens[0] for _, tokens in COMMANDS}
    assert {"mrinet.train", "mrinet.eval", "mrinet.predict"} <= modules


@pytest.mark.parametrize(("where", "tokens"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_is_valid(where, tokens, monkeypatch):
    if tokens[0] == "make":
        targets = re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.M)
        assert tokens[1] in targets, f"{where}: no make target {tokens[1]!r}"
        return
    if tokens[0].startswith("scripts/"):
        assert (ROOT / tokens[0]).is_file(), f"{where}: {tokens[0]} does not exist"
        return
    module = tokens[0]
    if module.startswith("mrinet-"):
        assert module in SCRIPTS, f"{where}: no console script {module} in pyproject.toml"
        module = SCRIPTS[module].split(":")[0]
    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
    name = module.rsplit(".", 1)[1] if "." in module else ""
    if name not in HYDRA_COMMANDS:
        return
    args = [t for t in tokens[1:] if t not in ("-m", "--multirun")]
    if "--cfg" in args:
        i = args.index("--cfg")
        del args[i : i + 2]
    if any(PLACEHOLDER.search(a) for a in args):
        pytest.skip(f"{where}: a placeholder stands in for a user's path")
    if path_of(where) == "extending.md":  # the walkthrough adds the examples' config folders
        monkeypatch.setenv("MRINET_CONFIG_PATH", os.pathsep.join(map(str, EXAMPLE_CONFIGS)))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        for overrides in first_values(args):
            cfg = compose(HYDRA_COMMANDS[name], overrides=overrides, return_hydra_config=True)
            assert cfg is not None, f"{where}: {overrides}"
