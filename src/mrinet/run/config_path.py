"""Config folders from outside the installed package: MRINET_CONFIG_PATH and extension packages.

Users never edit mrinet's configs/; they add folders that hold more options for its groups
(`model/net/resmlp.yaml`, `experiment/my_run.yaml`, `data/my_table.yaml`):

- on the command line: `--config-dir DIR` or `hydra.searchpath=[file://DIR]` (Hydra's own);
- `MRINET_CONFIG_PATH=DIR1:DIR2` (os.pathsep-separated), for every mrinet command;
- an installed extension package, by an entry point in its pyproject.toml:

      [project.entry-points."mrinet.configs"]
      mynets = "mynets.configs"       # a folder inside the installed package mynets

  (the package is located without importing it, so `--help` stays fast).

mrinet's Hydra search-path plugin (hydra_plugins/mrinet_searchpath) appends these folders
after mrinet's own, so their groups and options show in `--help`. A file that has the same
group and name as one of mrinet's (or of an earlier folder) would be silently ignored by
Hydra, which takes the first match: that is refused, naming both files.
"""

from __future__ import annotations

import importlib.util
import os
from importlib.metadata import entry_points
from pathlib import Path

from mrinet.errors import ConfigError

ENV = "MRINET_CONFIG_PATH"
ENTRY_POINT_GROUP = "mrinet.configs"


def env_folders(value: str | None = None) -> list[tuple[str, Path]]:
    """(origin, folder) for each entry of MRINET_CONFIG_PATH; a missing folder is an error."""
    value = os.environ.get(ENV, "") if value is None else value
    folders = []
    for entry in value.split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(
                f"config folder {entry!r} in {ENV} does not exist (resolved: {folder})",
                ENV,
                f"create the folder, or remove it from {ENV} (entries separated by {os.pathsep!r})",
            )
        folders.append((f"{ENV} entry {entry}", folder))
    return folders


def package_folder(dotted: str) -> Path | None:
    """Folder of `package.sub.folder` inside an installed package, found without importing it."""
    top, *rest = dotted.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        folder = Path(base, *rest)
        if folder.is_dir():
            return folder
    return None


def extension_folders() -> list[tuple[str, Path]]:
    """(origin, folder) of every installed package's `mrinet.configs` entry point."""
    folders = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        folder = package_folder(point.value.strip())
        dist = getattr(point.dist, "name", None) or "?"
        if folder is None:
            raise ConfigError(
                f"the installed package {dist!r} registers the config folder {point.value!r} "
                f"(entry point {point.name!r} in group {ENTRY_POINT_GROUP!r}), which is not there",
                f"[project.entry-points.{ENTRY_POINT_GROUP!r}] {point.name} of {dist}",
                "point the entry point at a folder inside the package (e.g. 'mynets.configs') and "
                "ship its YAML files as package data, or uninstall the package",
            )
        folders.append((f"package {dist} (entry point {ENTRY_POINT_GROUP}: {point.name})", folder))
    return folders


def yaml_files(folder: Path) -> dict[str, Path]:
    """`group/name.yaml` -> file, for every config in a folder."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.yaml"))}


def check_no_shadowing(own: Path, added: list[tuple[str, Path]]) -> None:
    """Refuse a config that has the group and name of mrinet's or of an earlier folder's: Hydra
    would use the first and ignore it without a word."""
    taken = {name: ("mrinet", path) for name, path in yaml_files(own).items()}
    for origin, folder in added:
        for name, path in yaml_files(folder).items():
            if name in taken and taken[name][1].resolve() != path.resolve():
                first_origin, first = taken[name]
                group, _, option = name.removesuffix(".yaml").rpartition("/")
                raise ConfigError(
                    f"{path} ({origin}) has the same group and name as {first} ({first_origin}): "
                    f"Hydra would take the first and ignore yours",
                    f"{group or '<primary>'}={option}",
                    f"rename {path.name} (e.g. my_{option}.yaml) and select it by its new name",
                )
            taken.setdefault(name, (origin, path))


def added_folders(own: Path) -> list[tuple[str, Path]]:
    """The folders MRINET_CONFIG_PATH and installed extensions add, checked, in search order."""
    folders = [*env_folders(), *extension_folders()]
    unique, seen = [], {own.resolve()}
    for origin, folder in folders:
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            unique.append((origin, folder))
    if unique:
        check_no_shadowing(own, unique)
    return unique


def check_searchpath_overrides(args: list[str]) -> None:
    """Refuse a `hydra.searchpath=[file://DIR]` override whose folder does not exist (Hydra
    only warns, then fails later with "Could not find" the user's config)."""
    candidates = [a for a in args if a.lstrip("+~").startswith("hydra.searchpath=")]
    if not candidates:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(candidates):
        value = override.value()
        for entry in value if isinstance(value, list) else [value]:
            entry = str(entry)
            if "://" in entry and not entry.startswith("file://"):
                continue  # pkg:// and other providers: Hydra checks them
            folder = Path(entry.removeprefix("file://")).expanduser()
            if not folder.is_dir():
                raise ConfigError(
                    f"config folder {entry!r} in hydra.searchpath does not exist "
                    f"(resolved: {folder.resolve()})",
                    "hydra.searchpath",
                    "give existing folders, e.g. hydra.searchpath=[file://$PWD/myconfigs] "
                    "(file:// plus an absolute path, or a path relative to where you run)",
                )
