"""Errors a user can act on: each message says what went wrong, where (file or key), and the fix."""

from __future__ import annotations

from pathlib import Path


class MrinetError(Exception):
    """Base class: the entry points print these as one clear message and exit non-zero."""

    def __init__(self, what: str, where: str | Path | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, None if where is None else str(where), fix
        parts = [what]
        if where is not None:
            parts.append(f"  where: {where}")
        if fix:
            parts.append(f"  fix:   {fix}")
        super().__init__("\n".join(parts))


class DataNotFoundError(MrinetError, FileNotFoundError):
    """A data directory, file or map that the configuration points at does not exist."""


class DataFormatError(MrinetError, ValueError):
    """A file exists but its content is not what mrinet expects (format, shape, dtype, units)."""


class ConfigError(MrinetError, ValueError):
    """A configuration value is invalid or inconsistent with the data."""


class CheckpointError(MrinetError):
    """A checkpoint is missing, corrupt, or was written by another model or experiment."""


def check_choice(value, choices, key: str, what: str | None = None):
    """`value` if it is one of `choices`; else a ConfigError naming the config key and the choices."""
    choices = tuple(choices)
    if value in choices:
        return value
    raise ConfigError(
        f"unknown {what or key.rsplit('.', 1)[-1]} {value!r}",
        key,
        f"{key}=<one of {', '.join(map(str, choices))}>",
    )
