"""Errors a user can act on: each message says what went wrong, where (file or key), and the fix."""

from __future__ import annotations

import errno as _errno
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


class DiskFullError(MrinetError):
    """A write failed because the device or the user's quota is full (ENOSPC, EDQUOT, EFBIG)."""


FULL_ERRNOS = frozenset(
    getattr(_errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(_errno, name)
)


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG, also from libraries that give only the message (HDF5)."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno in FULL_ERRNOS
    if not isinstance(err, (OSError, RuntimeError)):  # h5py: RuntimeError with HDF5's message
        return False
    text = str(err).lower()
    return any(m in text for m in ("no space left on device", "disk quota exceeded", "errno = 28"))


def disk_full_error(
    err: BaseException,
    path: str | Path | None = None,
    written: int | None = None,
    needed: int | None = None,
):
    """The DiskFullError for `err` (an ENOSPC/EDQUOT/EFBIG write of `path`), saying how much
    space the write needed when known and how much is free."""
    import errno
    import os
    import shutil

    path = path or getattr(err, "filename", None)
    what = "no space left on device"
    if getattr(err, "errno", None) not in (
        None,
        errno.ENOSPC,
    ):  # a quota or the largest file size: same remedy
        what += f" ({os.strerror(err.errno or 0).lower()})"
    details = []
    if needed:
        details.append(f"it needed {needed:,} bytes")
    elif written:
        details.append(f"it needed more than the {written:,} bytes written")
    if path is not None:
        folder = Path(path).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            details.append(f"{shutil.disk_usage(folder).free:,} bytes are free there")
        except OSError:
            pass
    return DiskFullError(
        f"{what} writing {path if path is not None else 'a file'}"
        + (f" ({'; '.join(details)})" if details else ""),
        path,
        "free space on that device (or raise your quota), or point paths.log_dir / "
        "paths.data_dir / the output at another disk, then run the same command again: "
        "finished outputs are kept and only the missing ones are redone",
    )
