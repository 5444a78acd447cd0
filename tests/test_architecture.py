"""Imports run one way: no import cycle in src/mrinet and src/hydra_plugins, and no import
against the layer table of docs/architecture.md. A small AST walk over every module (imports inside functions count too;
`if __name__ == "__main__":` blocks and `if TYPE_CHECKING:` blocks do not, they never run on
import). KNOWN lists what is tolerated for now (empty since the data/ task packages, issue 24
item 1): the test fails on any violation not listed AND on a listed one that is gone, so a list
only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# docs/architecture.md, top to bottom: a module may import its own package, any package of a
# lower layer, and another package of its own layer (sideways, never in a cycle). A unit is
# the longest matching prefix: `mrinet.data.contract` (DataSpec, a plain record) is a leaf while
# the rest of `mrinet.data` is a Lightning package; `mrinet` is the package's __init__ only,
# so a new package fails test_every_module_has_a_layer until it is given a layer here.
LAYERS = [
    (
        "commands",
        [
            "mrinet.train",
            "mrinet.eval",
            "mrinet.predict",
            "mrinet.export",
            "mrinet.reconstruct",
            "mrinet.cli",
            "hydra_plugins",  # mrinet's SLURM launcher and Optuna sweeper (src/hydra_plugins)
        ],
    ),
    ("run glue", ["mrinet.run"]),
    ("lightning", ["mrinet.models", "mrinet.callbacks", "mrinet.data", "mrinet.analysis"]),
    ("cluster", ["mrinet.slurm"]),
    ("pipelines", ["mrinet.recon", "mrinet.sim"]),
    ("files", ["mrinet.io"]),
    ("torch core", ["mrinet.nets", "mrinet.mri"]),
    (
        "leaves",
        [
            "mrinet.errors",
            "mrinet.utils",
            "mrinet.compat",
            "mrinet.data.contract",  # DataSpec, a plain record every layer may carry
            "mrinet.data.spec",  # its old name, re-exported for user code
            "mrinet",
        ],
    ),
]

# third-party frameworks a layer never imports (DESIGN.md: physics and files are plain torch)
FORBIDDEN_LIBRARIES = {
    "mrinet.mri": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
    "mrinet.nets": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
    "mrinet.io": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
    "mrinet.recon": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
    "mrinet.sim": ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf"),
}

# Imports against the table that are allowed for now (importer, imported) and import cycles
# (sets of modules): empty since the data/ task packages (issue 24, item 1). The test fails on
# an entry that is gone too, so a list only shrinks.
KNOWN_LAYER_VIOLATIONS: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()

# An import of a mrinet module inside a function hides an edge of the graph from a reader: it is
# allowed only where start-up time needs it, and says why in a comment holding `lazy:` (on the
# import's lines, or on the comment/import lines directly above it: one comment per block).
LAZY_REASON = "lazy:"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module under src/mrinet and src/hydra_plugins."""
    out = {}
    for path in [*(SRC / "mrinet").rglob("*.py"), *(SRC / "hydra_plugins").rglob("*.py")]:
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runs_on_import(node: ast.If) -> bool:
    test = ast.unparse(node.test)
    return not ("__main__" in test and "__name__" in test) and "TYPE_CHECKING" not in test


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported dotted name, line) for every import in the module that runs when imported."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and not _runs_on_import(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.extend((f"{base}.{alias.name}", child.lineno) for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def graph() -> dict[str, dict[str, int]]:
    """module -> {imported mrinet module: first line}; `from a import b` counts as a.b when
    a.b is a module, else as a (the package `a` a submodule import passes through is not an
    edge, as in grimp/import-linter: else every re-exporting __init__ would be a cycle)."""
    files = module_files()
    edges: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        targets = edges.setdefault(name, {})
        for imported, line in imports_of(name, path):
            while imported not in files and "." in imported:
                imported = imported.rpartition(".")[0]
            if imported in files and imported != name:
                targets.setdefault(imported, line)
    return edges


def unit_of(module: str) -> tuple[int, str]:
    """(layer index, unit) of a module: the longest prefix named in LAYERS."""
    best = (-1, -1, "")
    for index, (_, units) in enumerate(LAYERS):
        for unit in units:
            inside = module == unit or (unit != "mrinet" and module.startswith(unit + "."))
            if inside and len(unit) > best[0]:
                best = (len(unit), index, unit)
    assert best[0] > 0, f"{module} is in no layer of LAYERS (docs/architecture.md): add it"
    return best[1], best[2]


def layer_violations() -> set[tuple[str, str]]:
    """(importer, imported) pairs that import a higher layer."""
    bad = set()
    for importer, targets in graph().items():
        low, _ = unit_of(importer)
        for imported in targets:
            high, _ = unit_of(imported)
            if high < low:
                bad.add((importer, imported))
    return bad


def cycles() -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def unexplained_lazy_imports(name: str, path: Path) -> list[str]:
    """`name:line` of each import of a mrinet module inside a function without a `lazy:` reason."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    statements = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    import_lines = {i for n in statements for i in range(n.lineno, n.end_lineno + 1)}
    bad = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [package.split(".")[0] if node.level else (node.module or "").split(".")[0]]
            else:
                continue
            if "mrinet" not in roots:
                continue
            own = lines[node.lineno - 1 : node.end_lineno]
            above, k = [], node.lineno - 1  # 1-based line numbers above the statement
            while k >= 1 and (lines[k - 1].lstrip().startswith("#") or k in import_lines):
                above.append(lines[k - 1])
                k -= 1
            if not any(LAZY_REASON in line for line in own + above):
                bad.append(f"{name}:{node.lineno}")
    return bad


def test_every_module_has_a_layer():
    for module in module_files():
        unit_of(module)


def test_no_import_against_the_layer_table():
    found = layer_violations()
    edges = graph()
    new = sorted(found - KNOWN_LAYER_VIOLATIONS)
    assert not new, "imports against docs/architecture.md's layers:\n" + "\n".join(
        f"  {a} (line {edges[a][b]}) imports {b}" for a, b in new
    )
    gone = sorted(KNOWN_LAYER_VIOLATIONS - found)
    assert not gone, f"fixed, remove from KNOWN_LAYER_VIOLATIONS: {gone}"


def test_no_import_cycle():
    found = cycles()
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not gone, f"fixed or changed, update KNOWN_CYCLES: {gone}"


def test_no_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for importer, targets in graph().items():
        a = unit_of(importer)[1]
        for imported in targets:
            b = unit_of(imported)[1]
            if a != b and (importer, imported) not in KNOWN_LAYER_VIOLATIONS:
                packages.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in packages.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cyclic = sorted(p for p in packages if reaches(p, p, {p}))
    assert not cyclic, f"packages in an import cycle (sideways imports both ways): {cyclic}"


def test_physics_files_and_pipelines_import_no_training_framework():
    bad = []
    for name, path in module_files().items():
        for prefix, libraries in FORBIDDEN_LIBRARIES.items():
            if name == prefix or name.startswith(prefix + "."):
                bad += [
                    f"{name}:{line} imports {imported}"
                    for imported, line in imports_of(name, path)
                    if imported.split(".")[0] in libraries
                ]
    assert not bad, "\n".join(bad)


def test_imports_inside_functions_say_why():
    bad = [
        where
        for name, path in module_files().items()
        for where in unexplained_lazy_imports(name, path)
    ]
    assert not bad, (
        "mrinet imports inside functions without a `# lazy: <reason>` comment (move them to the "
        "module's top, or say which start-up time they keep short):\n  " + "\n  ".join(bad)
    )


def test_the_lazy_import_check_sees_a_missing_reason(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text(
        "import os\n"
        "def f():\n    from mrinet.run import checkpoints\n"
        "def g():\n    import json\n\n    from mrinet.errors import ConfigError\n"
        "def h():\n    # lazy: imports torch\n    from mrinet.models import metrics\n"
        "    from mrinet.run import (\n        trust,\n    )\n"
        "def i():\n    from . import sibling  # lazy: a test of relative imports\n"
        "def j():\n    from . import sibling\n"
    )
    found = unexplained_lazy_imports("mrinet.run.probe", module)
    assert found == ["mrinet.run.probe:3", "mrinet.run.probe:7", "mrinet.run.probe:17"]


def test_the_contract_catches_what_it_claims(tmp_path):
    """The walk sees imports inside functions and skips __main__ blocks (else the test above
    could pass on a graph it never built)."""
    module = tmp_path / "probe.py"
    module.write_text(
        "import os\n"
        "def f():\n    from mrinet.run import checkpoints\n"
        "if __name__ == '__main__':\n    import mrinet.cli\n"
    )
    names = [n for n, _ in imports_of("mrinet.mri.probe", module)]
    assert "mrinet.run.checkpoints" in names and "mrinet.cli" not in names
    assert unit_of("mrinet.data.spec") == (len(LAYERS) - 1, "mrinet.data.spec")
    assert unit_of("mrinet.data.voxels")[1] == "mrinet.data"
