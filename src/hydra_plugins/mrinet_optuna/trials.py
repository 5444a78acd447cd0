"""The trial loop of mrinet's Optuna sweeper: telling jobs where to report, asking trials,
telling their outcomes, recovering the trials of stopped sweepers, and running trials one at a
time, in batches or asynchronously."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

log = logging.getLogger("mrinet.sweep")

ENV = "hydra.job.env_set."


def _quote(text: str) -> str:
    """A Hydra override value, quoted (paths with spaces, JSON)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


class TrialLoop:
    """The trial-running half of MrinetOptunaSweeper (its checks and setup set the study,
    storage, space and launcher this mixin uses)."""

    def _tell_jobs(self) -> None:
        """The study, storage and pruner every trial's job reports to, as `hydra.job.env_set`
        overrides of the master config (Hydra composes each job from its overrides; the
        variables are set while the job runs, on any machine); each job adds its number."""
        from omegaconf import open_dict, read_write

        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run import trial_report as report

        assert self.config is not None
        env = {
            report.ENV_TRIAL: "",
            report.ENV_STUDY: str(self.study_name),
            report.ENV_STORAGE: self.spec.url,
            report.ENV_PRUNER: self.pruner_name.lower(),
            report.ENV_PRUNER_OPTIONS: json.dumps(self.pruner_options),
        }
        node = self.config.hydra.overrides
        with read_write(node), open_dict(node):
            node.hydra = [*node.hydra, *(f"++{ENV}{k}={_quote(v)}" for k, v in env.items())]

    def _recover(self, first: bool = False) -> None:
        """Fail and requeue trials whose sweeper is gone; on the first call, say where the
        study stands."""
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.liveness import count, interrupt, stale_trials
        from mrinet.run.study import OWNER

        if self.spec.kind != "memory":
            now = time.time()
            if first or now - getattr(self, "_last_recovery", 0.0) > self.heartbeat_s:
                self._last_recovery = now
                for trial in stale_trials(self.study, self.grace_s):
                    if trial.user_attrs.get(OWNER) == self.heartbeat.id:
                        continue
                    if interrupt(self.study, self.store, trial, "its sweeper stopped"):
                        log.warning(
                            "trial %d was left RUNNING by a sweeper that stopped: failed, and "
                            "its parameters queued to run again first",
                            trial.number,
                        )
        if not first:
            return
        counts = count(self.study)
        if counts.finished or counts.interrupted or counts.running or counts.waiting:
            log.info(
                "resuming study %r: %d trial(s) done, %d failed, %d interrupted (run again "
                "first); %d of n_trials=%d to run%s",
                self.study_name,
                counts.complete + counts.pruned,
                counts.failed,
                counts.waiting,
                max(self.n_trials - counts.finished - counts.running, 0),
                self.n_trials,
                f" ({counts.running} running elsewhere)" if counts.running else "",
            )

    def _slots_left(self) -> int:
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.liveness import count

        if getattr(self, "grid_done", False):
            return 0
        counts = count(self.study)
        return self.n_trials - counts.finished - counts.running

    def _ask(self) -> tuple[Any, list[str]]:
        """Ask the study for a trial (a queued retry first) and its job's overrides."""
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run import trial_report as report
        from mrinet.run.study import OWNER, RUN_DIR, trial_id

        trial = self.study.ask({p.key: p.distribution for p in self.space})
        tid = trial_id(self.store, str(self.study_name), trial.number)
        self.store.set_trial_user_attr(tid, OWNER, self.heartbeat.id)
        self.store.set_trial_user_attr(tid, RUN_DIR, str(self.sweep_dir / str(trial.number)))
        overrides = [
            *self.fixed,
            *(p.override(trial.params[p.key]) for p in self.space),
            f"{ENV}{report.ENV_TRIAL}={trial.number}",  # the rest: _tell_jobs
        ]
        return trial, overrides

    def _tell(self, trial: Any, ret: JobReturn) -> None:
        """The job's outcome into the study: COMPLETE, PRUNED (the job stopped on the pruner's
        word) or FAIL (an error, no value, a non-finite value)."""
        from optuna.trial import TrialState

        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.study import PRUNED_AT, finite, trial_id
        from mrinet.run.sweep import first_line

        tid = trial_id(self.store, str(self.study_name), trial.number)
        frozen = self.store.get_trial(tid)
        error = None
        if ret.status != JobStatus.COMPLETED:
            error = first_line(ret._return_value) if ret._return_value is not None else "failed"
        if error is None and PRUNED_AT in frozen.user_attrs:
            state, values = TrialState.PRUNED, None
        elif error is None:
            value = finite(ret.return_value)
            if value is None:
                error = f"the job returned {ret.return_value!r}, not a finite number"
            state, values = TrialState.COMPLETE, value
        if error is not None:
            self.store.set_trial_user_attr(tid, "mrinet_error", error[:500])
            state, values = TrialState.FAIL, None
        try:
            self.study.tell(trial.number, values, state=state, skip_if_finished=True)
        except RuntimeError as err:
            # GridSampler calls study.stop() once its grid is covered, which only works inside
            # study.optimize; the trial is stored before that (Optuna's tell stores it in a
            # `finally`): the grid is done, ask no more
            if "Study.stop" not in str(err):
                raise
            if not getattr(self, "grid_done", False):
                log.info("the grid is covered: no more trials (n_trials=%d)", self.n_trials)
            self.grid_done = True
        self.done_here += 1
        self.failed_here += state == TrialState.FAIL
        log.info(
            "trial %d %s%s",
            trial.number,
            state.name.lower(),
            f": {error}" if error else (f" with value {values:.6g}" if values is not None else ""),
        )
        if error and error.startswith("ConfigError: optimized_metric"):
            # the metric itself is wrong (not logged in validation): every trial would fail
            self.stop_reason = f"trial {trial.number}: {error}; no new trials started"
            return
        rate = self.failed_here / self.done_here
        if self.done_here >= self.n_jobs and rate > float(self.max_failure_rate):
            self.stop_reason = (
                f"{self.failed_here} of this sweep's {self.done_here} trials failed, more than "
                f"max_failure_rate={self.max_failure_rate}: no new trials started"
            )

    def _run_sequential(self) -> None:
        while self.stop_reason is None and self._slots_left() > 0:
            trial, overrides = self._ask()
            try:
                (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
            except BaseException:
                # lazy: Hydra imports every plugin module when any app starts
                from mrinet.run.liveness import interrupt

                interrupt(self.study, self.store, trial, "its sweeper was interrupted")
                raise
            self._tell(trial, ret)
            self._recover()

    def _run_batches(self) -> None:
        """Batch-synchronous trials (async_trials=false, or a launcher without submit/poll):
        n_jobs trials asked together, the next batch once the slowest of them ended."""
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.liveness import interrupt

        while self.stop_reason is None:
            batch = []
            for _ in range(min(self.n_jobs, self._slots_left())):
                batch.append(self._ask())
            if not batch:
                break
            numbers = [t.number for t, _ in batch]
            try:
                if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
                    rets = self.launcher.launch([o for _, o in batch], initial_job_idx=numbers[0])
                else:  # another sweeper took numbers in between: job number = trial number
                    rets = [
                        self.launcher.launch([o], initial_job_idx=t.number)[0] for t, o in batch
                    ]
            except BaseException:
                for trial, _ in batch:
                    interrupt(self.study, self.store, trial, "its sweeper was interrupted")
                raise
            for (trial, _), ret in zip(batch, rets):
                self._tell(trial, ret)
            self._recover()

    def _run_async(self) -> None:
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.run.liveness import interrupt

        self.launcher.start_trials()
        inflight: dict[str, Any] = {}
        poll_s = float(getattr(self.launcher, "poll_s", 1.0))
        try:
            while True:
                while (
                    self.stop_reason is None
                    and len(inflight) < self.n_jobs
                    and self._slots_left() > 0
                ):
                    trial, overrides = self._ask()
                    try:
                        key = self.launcher.submit_trial(overrides, trial.number)
                    except BaseException:
                        interrupt(self.study, self.store, trial, "not submitted")
                        raise
                    inflight[key] = trial
                if not inflight:
                    break
                finished = self.launcher.poll_trials()
                for key, ret in finished.items():
                    self._tell(inflight.pop(key), ret)
                self._recover()
                if not finished:
                    time.sleep(poll_s)
        except BaseException:
            if inflight:
                self.launcher.cancel_trials(list(inflight))
                for trial in inflight.values():
                    interrupt(self.study, self.store, trial, "its sweeper was interrupted")
                log.warning(
                    "sweep interrupted: trial(s) %s failed and queued to run again first "
                    "(run the same command to resume)",
                    ", ".join(str(t.number) for t in inflight.values()),
                )
            raise
