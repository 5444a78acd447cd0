"""A sweep trial's link to its study, from wherever the trial runs (this process, a local
subprocess, a SLURM job): report a value per epoch, ask whether to stop.

mrinet's sweeper tells each job which trial it is through Hydra's `hydra.job.env_set`
(the environment variables below, set only while the job runs); the job opens the same
storage (a journal file or an RDB URL; an in-memory study only in the sweeper's own process)
and writes its intermediate values there, so the pruner compares it with every other trial
of the study, whoever ran them. Only Optuna's public storage and pruner API is used.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from mrinet.run import study as studies
from mrinet.run.run_dirs import process_rank
from mrinet.run.samplers import make_pruner
from mrinet.run.study import PRUNED_AT, trial_id

log = logging.getLogger("mrinet.sweep")

ENV_TRIAL = "MRINET_OPTUNA_TRIAL"
ENV_STUDY = "MRINET_OPTUNA_STUDY"
ENV_STORAGE = "MRINET_OPTUNA_STORAGE"
ENV_PRUNER = "MRINET_OPTUNA_PRUNER"
ENV_PRUNER_OPTIONS = "MRINET_OPTUNA_PRUNER_OPTIONS"


def in_trial() -> bool:
    """Whether this process runs a trial of mrinet's Optuna sweeper."""
    return bool(os.environ.get(ENV_TRIAL))


def storage_for_job(url: str) -> Any | None:
    """The storage a job reports to: the sweeper's own object in-process, else opened anew."""
    if url.startswith("memory:"):
        return studies._LIVE.get(url)  # None in another process: nothing to report to
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    import optuna

    return optuna.storages.RDBStorage(url)


class TrialReporter:
    """Reports one trial's per-epoch values to its study and relays the pruner's verdict."""

    def __init__(
        self,
        storage_url: str,
        study_name: str,
        number: int,
        pruner: str = "none",
        pruner_options: dict | None = None,
    ) -> None:
        self.study_name, self.number = study_name, int(number)
        self.storage = storage_for_job(storage_url)
        self.pruner_name = pruner
        self.pruner = make_pruner(pruner, pruner_options)
        self.study = None
        self.trial_id = None
        self.pruned_at: int | None = None
        self.last: tuple[int, float] | None = None
        if self.storage is None:
            log.warning(
                "trial %d: its in-memory study lives in the sweeper's process; values not "
                "reported (use hydra.sweeper.storage=journal:<path> to report from here)",
                self.number,
            )
            return
        import optuna

        self.study = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=self.pruner
        )
        self.trial_id = trial_id(self.storage, study_name, self.number)

    @classmethod
    def from_env(cls) -> TrialReporter | None:
        """The reporter of the trial this process runs, or None outside mrinet's sweeper."""
        if not in_trial():
            return None
        options = json.loads(os.environ.get(ENV_PRUNER_OPTIONS) or "{}")
        return cls(
            os.environ[ENV_STORAGE],
            os.environ[ENV_STUDY],
            int(os.environ[ENV_TRIAL]),
            os.environ.get(ENV_PRUNER, "none"),
            options,
        )

    @property
    def prunes(self) -> bool:
        return self.pruner_name != "none" and self.study is not None

    def report(self, step: int, value: float) -> bool:
        """Record `value` at `step` (once: a step already there, e.g. revalidated after a
        requeue, is not reported again) and return whether the pruner stops the trial."""
        self.last = (int(step), float(value))
        if self.study is None:
            return False
        import optuna

        try:
            frozen = self.storage.get_trial(self.trial_id)
            if frozen.state != optuna.trial.TrialState.RUNNING:
                log.warning(
                    "trial %d is %s in the study (its sweeper stopped): not reported",
                    self.number,
                    frozen.state.name,
                )
                self.study = None
                return False
            if int(step) not in frozen.intermediate_values:
                self.storage.set_trial_intermediate_value(self.trial_id, int(step), float(value))
                frozen = self.storage.get_trial(self.trial_id)
            return bool(self.pruner.prune(self.study, frozen))
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d finished in the study meanwhile: not reported", self.number)
            self.study = None
            return False

    def mark_pruned(self, step: int) -> None:
        """Tell the sweeper (through the study) that the trial stopped on the pruner's word."""
        self.pruned_at = int(step)
        if self.study is not None:
            self.storage.set_trial_user_attr(self.trial_id, PRUNED_AT, int(step))


def sweep_trial_callbacks(cfg) -> list:
    """[OptunaPruning] in a run of mrinet's Optuna sweeper, else [] (called by mrinet.train)."""
    if not in_trial() or not cfg.get("optimized_metric"):
        return []
    from mrinet.callbacks.optuna_pruning import OptunaPruning  # lazy: Lightning, only in a trial

    reporter = TrialReporter.from_env() if process_rank() == 0 else None
    return [OptunaPruning(str(cfg.optimized_metric), cfg.paths.output_dir, reporter)]
