"""Liveness of shared studies: sweepers beat, and only the trials of stopped sweepers are failed.

Every sweeper has an id and beats into the study's user attributes
(`mrinet_sweeper:<id>` = last beat, time.time()) every `heartbeat_s`; each trial it asks
carries its sweeper's id. A RUNNING trial is stale when its sweeper stopped beating for
`grace_s` (killed with -9, node lost) or said it stopped; only stale trials are failed and
queued again, so several sweepers can feed one study. Optuna's own heartbeat exists for RDB
storages only and beats per trial from the objective's process: here trials run elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mrinet.run.study import BEAT, INTERRUPTED, OWNER, RETRY_OF, trial_id

log = logging.getLogger("mrinet.sweep")


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
