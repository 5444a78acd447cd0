"""Optuna studies for mrinet's sweeper: storages, search spaces, samplers, pruners, liveness.

Everything the sweeper (hydra_plugins.mrinet_optuna) decides before the first trial runs lives
here, so each bad setting is one ConfigError naming its `hydra.sweeper` key and the fix. Only
Optuna's public API is used: a study's storage is the object mrinet opened itself, and trials
are addressed through `storage.get_trial_id_from_study_id_trial_number`.

Liveness (shared studies): every sweeper has an id and beats into the study's user attributes
(`mrinet_sweeper:<id>` = last beat, time.time()) every `heartbeat_s`; each trial it asks
carries its sweeper's id. A RUNNING trial is stale when its sweeper stopped beating for
`grace_s` (killed with -9, node lost) or said it stopped; only stale trials are failed and
queued again, so several sweepers can feed one study. Optuna's own heartbeat exists for RDB
storages only and beats per trial from the objective's process: here trials run elsewhere.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrinet.errors import ConfigError

log = logging.getLogger("mrinet.sweep")

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")
PRUNERS = ("none", "median", "hyperband", "successive_halving")
# trial user attributes (public: they show in optuna-dashboard)
OWNER = "mrinet_sweeper"
INTERRUPTED = "mrinet_interrupted"
RETRY_OF = "mrinet_retry_of"
PRUNED_AT = "mrinet_pruned_epoch"
RUN_DIR = "mrinet_run_dir"
BEAT = "mrinet_sweeper:"
KEY = "hydra.sweeper"


# ---------------------------------------------------------------- storages


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


# ---------------------------------------------------------------- search space


@dataclass
class Param:
    """One swept key: its Optuna distribution and, for choices, value -> override text."""

    key: str
    distribution: Any
    as_text: dict[Any, str] = field(default_factory=dict)

    def override(self, value: Any) -> str:
        """`key=value` for Hydra, as the user wrote the choice (lists, quoted strings)."""
        if value in self.as_text:
            return f"{self.key}={self.as_text[value]}"
        if isinstance(value, float) and value.is_integer() and _is_int_dist(self.distribution):
            value = int(value)
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"


def _is_int_dist(dist: Any) -> bool:
    from optuna.distributions import IntDistribution

    return isinstance(dist, IntDistribution)


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def search_space(
    params: dict[str, str] | None, arguments: list[str], config_loader: Any = None
) -> tuple[list[Param], list[str]]:
    """Hydra sweep grammar -> (swept params, fixed overrides), from `hydra.sweeper.params` and
    the command line (which wins for a key given in both)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    texts: dict[str, tuple[str, str]] = {}
    for key, value in (params or {}).items():
        texts[str(key)] = (f"{key}={value}", f"{KEY}.params.{key}")
    for arg in arguments:
        key = arg.split("=", 1)[0].lstrip("+~")
        texts[key] = (arg, f"command line: {arg}")
    swept, fixed = [], []
    for text, where in texts.values():
        try:
            (override,) = parser.parse_overrides([text])
        except Exception as err:
            first = str(err).strip().splitlines()[0]
            raise ConfigError(
                f"sweep grammar error in {text!r}: {first}",
                where,
                "write choice(a,b,...), range(start,stop[,step]), interval(low,high), "
                "tag(log, interval(low,high)) or a plain value (Hydra's override grammar)",
            ) from None
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        swept.append(_param(override, where))
    return swept, fixed


def _param(override: Any, where: str) -> Param:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    key = override.get_key_element()
    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(
            f"unknown tag(s) {sorted(unknown)} for {key}",
            where,
            "the sweeper knows tag(log, ...) (log scale) and tag(int, interval(...)) (integers)",
        )
    log_scale = "log" in tags
    try:
        if isinstance(value, ChoiceSweep):
            if log_scale:
                raise ValueError("tag(log) needs interval() or range(), not choice()")
            texts = list(override.sweep_string_iterator())
            choices, as_text = [], {}
            for element, text in zip(value.list, texts):
                choice = element if _primitive(element) else text
                choices.append(choice)
                as_text[choice] = text
            if len(set(map(repr, choices))) != len(choices):
                raise ValueError("the same choice is listed twice")
            return Param(key, CategoricalDistribution(choices), as_text)
        if isinstance(value, RangeSweep):
            numbers = [value.start, value.stop, value.step]
            if value.start is None or value.stop is None:
                raise ValueError("range() needs a start and a stop")
            last = list(value.range())
            if not last:
                raise ValueError("range() is empty")
            if all(isinstance(n, int) for n in numbers):
                return Param(
                    key,
                    IntDistribution(
                        value.start, last[-1], log=log_scale, step=1 if log_scale else value.step
                    ),
                )
            if log_scale:
                raise ValueError("tag(log) with a float range(): use tag(log, interval(a, b))")
            return Param(
                key, FloatDistribution(float(value.start), float(last[-1]), step=float(value.step))
            )
        if isinstance(value, IntervalSweep):
            low, high = value.start, value.end
            if "int" in tags:
                return Param(key, IntDistribution(int(low), int(high), log=log_scale))
            return Param(key, FloatDistribution(float(low), float(high), log=log_scale))
    except ValueError as err:
        raise ConfigError(
            f"cannot sweep {key}: {err}",
            where,
            "e.g. choice(a,b), range(1,10), interval(0.1,0.9), tag(log, interval(1e-4,1e-1)) "
            "(log needs low > 0)",
        ) from None
    raise ConfigError(
        f"cannot sweep {key} with {type(value).__name__}",
        where,
        "use choice(), range() or interval()",
    )


# ---------------------------------------------------------------- samplers, pruners


def make_sampler(name: Any, seed: int | None, options: dict | None, space: list[Param]) -> Any:
    """`hydra.sweeper.sampler` (tpe|random|gp|cmaes|grid, or a `_target_` mapping) + options."""
    import optuna

    options = dict(options or {})
    if isinstance(name, dict) or hasattr(name, "keys"):  # a user's own sampler class
        from hydra.utils import instantiate

        spec = dict(name)
        spec.setdefault("seed", seed)
        return instantiate(spec)
    name = str(name).lower()
    if name not in SAMPLERS:
        raise ConfigError(
            f"unknown sampler {name!r}",
            f"{KEY}.sampler",
            f"{KEY}.sampler=<one of {', '.join(SAMPLERS)}> (options: {KEY}.sampler_options)",
        )
    samplers = optuna.samplers
    if name == "grid":
        grid = {}
        for p in space:
            dist = p.distribution
            if hasattr(dist, "choices"):
                grid[p.key] = list(dist.choices)
            elif _is_int_dist(dist) and not dist.log:
                grid[p.key] = list(range(dist.low, dist.high + 1, dist.step))
            elif getattr(dist, "step", None):
                n = round((dist.high - dist.low) / dist.step)
                grid[p.key] = [dist.low + i * dist.step for i in range(n + 1)]
            else:
                raise ConfigError(
                    f"grid sampler cannot enumerate {p.key} (a continuous interval)",
                    f"{KEY}.params.{p.key}",
                    f"use choice(...) or range(...) for it, or another sampler ({KEY}.sampler=tpe)",
                )
        options.setdefault("search_space", grid)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(
                "the cmaes sampler needs the cmaes package",
                f"{KEY}.sampler",
                "pip install cmaes, or another sampler (tpe, gp, random)",
            ) from None
    cls = {
        "tpe": samplers.TPESampler,
        "random": samplers.RandomSampler,
        "gp": samplers.GPSampler,
        "cmaes": samplers.CmaEsSampler,
        "grid": samplers.GridSampler,
    }[name]
    try:
        return cls(seed=seed, **options)
    except (TypeError, ValueError, ImportError) as err:
        raise ConfigError(
            f"{cls.__name__} refused its options {options if name != 'grid' else ''}: {err}",
            f"{KEY}.sampler_options",
            f"give only keyword arguments of optuna.samplers.{cls.__name__}",
        ) from None


def make_pruner(name: Any, options: dict | None) -> Any:
    """`hydra.sweeper.pruner` (none|median|hyperband|successive_halving) + its options."""
    import optuna

    name = "none" if name in (None, False) else str(name).lower()
    if name not in PRUNERS:
        raise ConfigError(
            f"unknown pruner {name!r}",
            f"{KEY}.pruner",
            f"{KEY}.pruner=<one of {', '.join(PRUNERS)}> (options: {KEY}.pruner_options)",
        )
    pruners = optuna.pruners
    cls = {
        "none": pruners.NopPruner,
        "median": pruners.MedianPruner,
        "hyperband": pruners.HyperbandPruner,
        "successive_halving": pruners.SuccessiveHalvingPruner,
    }[name]
    try:
        return cls(**dict(options or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{cls.__name__} refused its options {dict(options or {})}: {err}",
            f"{KEY}.pruner_options",
            f"give only keyword arguments of optuna.pruners.{cls.__name__}",
        ) from None


# ---------------------------------------------------------------- liveness


class Heartbeat:
    """This sweeper's beat in the study's user attributes, from a daemon thread."""

    def __init__(self, study: Any, interval_s: float) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.study, self.interval_s = study, float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, alive: bool = True) -> None:
        self.study.set_user_attr(BEAT + self.id, time.time() if alive else -1.0)

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="mrinet-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception as err:  # a storage hiccup must not kill the sweep
                log.warning("heartbeat not recorded: %s", err)

    def stop(self) -> None:
        """Stop beating and say so: this sweeper's trials are stale at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.beat(alive=False)
        except Exception as err:
            log.warning("heartbeat end not recorded: %s", err)


def stale_trials(study: Any, grace_s: float, now: float | None = None) -> list[Any]:
    """RUNNING trials whose sweeper stopped beating `grace_s` ago, or said it stopped."""
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    beats = {k[len(BEAT) :]: v for k, v in study.user_attrs.items() if k.startswith(BEAT)}
    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER)
        if owner is None:  # asked outside mrinet, or killed between ask and tagging
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - started > grace_s:
                found.append(trial)
            continue
        last = beats.get(owner)
        if last is None or last < 0 or now - float(last) > grace_s:
            found.append(trial)
    return found


def interrupt(study: Any, storage: Any, trial: Any, why: str) -> bool:
    """Fail an interrupted RUNNING trial and queue its parameters again (run first). False when
    another sweeper got there first (the trial is finished already)."""
    import optuna
    from optuna.trial import TrialState

    tid = trial_id(storage, study.study_name, trial.number)
    try:
        storage.set_trial_user_attr(tid, INTERRUPTED, why)
        if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
            return False
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False
    study.enqueue_trial(dict(trial.params), user_attrs={RETRY_OF: trial.number})
    return True


@dataclass
class Counts:
    """Where a study stands: finished trials count towards n_trials, interrupted ones do not."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def count(study: Any) -> Counts:
    from optuna.trial import TrialState

    counts = Counts()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            counts.complete += 1
        elif t.state == TrialState.PRUNED:
            counts.pruned += 1
        elif t.state == TrialState.FAIL:
            if t.user_attrs.get(INTERRUPTED):
                counts.interrupted += 1
            else:
                counts.failed += 1
        elif t.state == TrialState.RUNNING:
            counts.running += 1
        elif t.state == TrialState.WAITING:
            counts.waiting += 1
    return counts


def finite(value: Any) -> float | None:
    """`value` as a finite float, else None (a NaN objective fails its trial, not the study)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
