"""Prove that installing mrinet's extras beside a current stack changes none of it.

    python scripts/check_extra_no_downgrade.py [EXTRAS]      (default: sweep)

Asks pip what `pip install --dry-run --report` of `.[EXTRAS]` would do in this environment
and fails (exit 1) if it would replace any installed distribution by a LOWER version (the
issue: mrinet[sweep] used to take optuna 5 / SQLAlchemy 2.1 / alembic 1.20 back to 2.10 / 1.4
/ 1.13). Upgrades and new packages are listed, not failures. .ci/run installs the stack first
(optuna 5.0, SQLAlchemy 2.1, alembic 1.20) and runs this.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed() -> dict[str, str]:
    """Installed distributions: canonical name -> version."""
    return {_canon(d.metadata["Name"]): d.version for d in metadata.distributions()}


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def downgrades(report: dict, have: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, installed, would install) for every install in pip's report below what is here."""
    from packaging.version import Version

    found = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = _canon(meta.get("name", "")), meta.get("version", "")
        if name in have and version and Version(version) < Version(have[name]):
            found.append((name, have[name], version))
    return found


def main(argv: list[str]) -> int:
    extras = argv[0] if argv else "sweep"
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report_path),
            f"{ROOT}[{extras}]",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"pip could not resolve .[{extras}]:\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text())
    have = installed()
    for key in ("optuna", "sqlalchemy", "alembic"):
        print(f"installed: {key} {have.get(key, '-')}")
    changes = [
        (_canon(i["metadata"]["name"]), i["metadata"]["version"])
        for i in report.get("install", [])
        if _canon(i["metadata"]["name"]) != "mrinet"
    ]
    print(
        f"pip install .[{extras}] would install: "
        + (", ".join(f"{n}=={v}" for n, v in changes) or "nothing new")
    )
    bad = downgrades(report, have)
    for name, old, new in bad:
        print(f"DOWNGRADE: {name} {old} -> {new}", file=sys.stderr)
    if bad:
        return 1
    print(f"ok: .[{extras}] downgrades nothing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
