"""Optuna studies for mrinet's sweeper: storages, the study, trial addresses and attributes.

What the sweeper (hydra_plugins.mrinet_optuna) decides before the first trial runs lives here
and beside it (mrinet.run.search_space, mrinet.run.samplers), so each bad setting is one
ConfigError naming its `hydra.sweeper` key and the fix; liveness of shared studies is
mrinet.run.liveness. Only Optuna's public API is used: a study's storage is the object mrinet
opened itself, and trials are addressed through `storage.get_trial_id_from_study_id_trial_number`.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrinet.errors import ConfigError

# trial user attributes (public: they show in optuna-dashboard)
OWNER = "mrinet_sweeper"
INTERRUPTED = "mrinet_interrupted"
RETRY_OF = "mrinet_retry_of"
PRUNED_AT = "mrinet_pruned_epoch"
RUN_DIR = "mrinet_run_dir"
BEAT = "mrinet_sweeper:"
KEY = "hydra.sweeper"


@dataclass
class StorageSpec:
    """Where a study lives: `memory`, an RDB URL, or a journal file (absolute path)."""

    kind: str  # memory | rdb | journal
    url: str  # what a job is told (journal:/abs/path, sqlite:///..., memory:<key>)
    path: Path | None = None


def parse_storage(storage: str | None, launch_dir: str | Path) -> StorageSpec:
    """`hydra.sweeper.storage` -> StorageSpec; relative journal paths against the launch dir."""
    if storage in (None, "", "null", "memory"):
        return StorageSpec("memory", f"memory:{uuid.uuid4().hex}")
    text = str(storage)
    if text.startswith("journal:"):
        raw = text[len("journal:") :]
        if raw.startswith("//"):  # journal:///abs/path, URL style
            raw = raw[2:]
        if not raw:
            raise ConfigError(
                "journal storage without a file path",
                f"{KEY}.storage",
                f"{KEY}.storage=journal:/abs/path/study.journal (or a path relative to the "
                "launch dir)",
            )
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path(launch_dir) / path
        return StorageSpec("journal", f"journal:{path}", path)
    if "://" in text:
        url = text
        if text.startswith("sqlite:///") and not text.startswith("sqlite:////"):
            # sqlite:///rel.db is relative to the cwd: make it the launch dir's, for every job
            rel = text[len("sqlite:///") :]
            if rel and rel != ":memory:":
                url = f"sqlite:///{Path(launch_dir) / rel}"
        return StorageSpec("rdb", url)
    raise ConfigError(
        f"storage {text!r} is neither an RDB URL nor a journal file",
        f"{KEY}.storage",
        f"{KEY}.storage=journal:/abs/path/study.journal (shared file systems, several "
        f"sweepers), {KEY}.storage=sqlite:///optuna.db (one machine), or leave it null "
        "(in memory)",
    )


_LIVE: dict[str, Any] = {}  # in-memory storages by key, for trials run in this process


def open_storage(spec: StorageSpec) -> Any:
    """The Optuna storage object, or a ConfigError naming the storage key and the fix."""
    import optuna

    if spec.kind == "memory":
        return _LIVE.setdefault(spec.url, optuna.storages.InMemoryStorage())
    if spec.kind == "journal":
        assert spec.path is not None
        folder = spec.path.parent
        if not folder.is_dir():
            raise ConfigError(
                f"the journal's folder {folder} does not exist",
                f"{KEY}.storage",
                f"mkdir -p {folder}, or point {KEY}.storage=journal:<path> into an existing "
                "folder (on a cluster: one every node sees)",
            )
        if not os.access(folder, os.W_OK | os.X_OK) or (
            spec.path.exists() and not os.access(spec.path, os.W_OK)
        ):
            raise ConfigError(
                f"the journal {spec.path} cannot be written",
                f"{KEY}.storage",
                f"put the journal in a folder you can write ({KEY}.storage=journal:<path>)",
            )
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(spec.path)))
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"the journal {spec.path} cannot be opened: {err}",
                f"{KEY}.storage",
                "give a journal file written by Optuna's JournalFileBackend, or a new path",
            ) from None
    try:
        return optuna.storages.RDBStorage(spec.url)
    except Exception as err:  # sqlalchemy's ArgumentError, OperationalError, ImportError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"the storage {spec.url!r} cannot be opened ({type(err).__name__}: {first[:300]})",
            f"{KEY}.storage",
            f"check the URL and that its folder/server is reachable, e.g. {KEY}.storage="
            "sqlite:////abs/path/optuna.db; on shared file systems prefer "
            f"{KEY}.storage=journal:/abs/path/study.journal",
        ) from None


def open_study(storage: Any, name: str, direction: str, sampler: Any, pruner: Any) -> Any:
    """Create or load the study; an existing one with the other direction is refused."""
    import optuna

    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        study_id = None
    if study_id is not None:
        existing = [d.name.lower() for d in storage.get_study_directions(study_id)]
        if existing != [direction]:
            other = "max" if existing == ["maximize"] else "min"
            raise ConfigError(
                f"study {name!r} in this storage was created to {'/'.join(existing)}, "
                f"this sweep would {direction}",
                f"{KEY}.study_name",
                f"use another {KEY}.study_name for this search, or optimized_mode={other} "
                "with the metric that study optimizes",
            )
    return optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        study_name=name,
        direction=direction,
        load_if_exists=True,
    )


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """Storage id of trial `number` of the study (public storage API, no private attributes)."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number
    )


def finite(value: Any) -> float | None:
    """`value` as a finite float, else None (a NaN objective fails its trial, not the study)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
