"""Append user and extension config folders to a mrinet command's search path (mrinet.run.config_path)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MrinetSearchPathPlugin(SearchPathPlugin):
    """Runs for every Hydra app in the process; acts only for mrinet's (its config dir is in
    the search path), so other Hydra apps see no mrinet folders."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.config_dir import config_dir
        from mrinet.run.config_path import added_folders, check_searchpath_overrides

        own = Path(config_dir()).resolve()
        if not any(_folder(e.path) == own for e in search_path.get_path()):
            return
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.errors import MrinetError

        try:
            folders = added_folders(own)
            if _mrinet_command():
                check_searchpath_overrides(sys.argv[1:])
        except MrinetError as err:
            if not _mrinet_command():
                raise  # the compose API (tests, notebooks): the caller sees the exception
            # a command line: Hydra has not started its error reporting yet, so say it here
            print(f"\nmrinet: {type(err).__name__}: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        for _origin, folder in folders:
            search_path.append("mrinet-user", f"file://{folder}")


def _folder(path: str | None) -> Path | None:
    """The folder of a `file://DIR` or plain-path search path entry (None for pkg:// etc.)."""
    if not path or ("://" in path and not path.startswith("file://")):
        return None
    return Path(path.removeprefix("file://")).resolve()


def _mrinet_command() -> bool:
    """True in `python -m mrinet.<command>` and the mrinet-* console scripts."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    # lazy: Hydra imports every plugin module when any app starts
    import mrinet

    package = Path(mrinet.__file__).resolve().parent
    return script.name.startswith("mrinet-") or package in script.resolve().parents
