"""Folders a run will write, checked before Hydra creates anything: read-only, or a file in
the way, is refused up front naming the config key (not a traceback from deep inside).

Writability is tested by writing (and deleting) a 64 KiB temporary file in the folder, or in
its nearest existing parent when it does not exist yet (a device already full is refused too): permission bits say nothing for root
(who may write a chmod 555 folder, but not a read-only mount), and os.access answers for the
permission bits only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mrinet.errors import ConfigError, MrinetError, disk_full_error, is_disk_full

PROBE_BYTES = 64 * 1024  # the least a run needs to start (its configs and logs)


def check_writable_dir(path: str | Path, key: str) -> Path:
    """`path` is, or can become, a folder this process can write; else a ConfigError naming
    `key` (the folder is not created here)."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    fix = f"give {key}=<a folder you can write> (or fix the permissions/mount of {existing})"
    if not existing.is_dir():
        raise ConfigError(
            f"{key}={path} cannot be created: {existing} is a file, not a folder", key, fix
        )
    name = None
    try:
        fd, name = tempfile.mkstemp(prefix=".mrinet-write-test-", dir=existing)
        # a device already full: said now, not in a traceback from Hydra's first write
        with os.fdopen(fd, "wb") as probe:  # writes all of it, or raises
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(err, path, needed=PROBE_BYTES) from err
        raise ConfigError(
            f"{key}={path} is not writable: {err.strerror or err} in {existing}"
            + (" (a read-only filesystem)" if err.errno == 30 else ""),
            key,
            fix,
        ) from err
    finally:
        if name is not None:
            os.unlink(name)
    return path


def _select(config: DictConfig, key: str):
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    return None if value in (None, "", "???") else str(value)


def output_dirs(config: DictConfig, run_key: str) -> list[tuple[str, str]]:
    """(key, folder) this run writes: its run (or sweep) dir, named by paths.log_dir when it
    lies inside it; paths.data_dir when training on simulated data (its cache lives there)."""
    dirs = []
    run_dir, log_dir = _select(config, run_key), _select(config, "paths.log_dir")
    if run_dir is not None:
        inside = log_dir is not None and Path(run_dir).absolute().is_relative_to(
            Path(log_dir).absolute()
        )
        dirs.append(("paths.log_dir" if inside else run_key, log_dir if inside else run_dir))
    if "train" in config and _select(config, "data.source") == "synthetic":
        data_dir = _select(config, "paths.data_dir")
        if data_dir is not None:
            dirs.append(("paths.data_dir", data_dir))
    return dirs


class CheckOutputDirs(Callback):
    """Hydra callback (configs/hydra/default.yaml): the checks above at the start of a run or
    a sweep, before Hydra makes the run dir; a refusal exits 1 with one message."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, run_key: str) -> None:
        try:
            for key, folder in output_dirs(config, run_key):
                check_writable_dir(folder, key)
        except MrinetError as err:
            print(f"\nmrinet: {type(err).__name__}: {err}", file=sys.stderr)
            raise SystemExit(1) from None
