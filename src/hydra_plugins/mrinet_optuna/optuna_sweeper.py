"""mrinet's Optuna sweeper: hydra-optuna-sweeper's, resuming a persistent study where it stopped.

With `hydra.sweeper.storage=sqlite:///optuna.db` the same command run again (after the login-node
process was killed, or to extend a study) loads the study instead of starting over. The stock
sweeper then ran `n_trials` more, and the trials the killed process had in flight stayed
RUNNING in the database forever. Here, before sweeping a study that exists:
- trials left RUNNING (their process is gone) are marked FAIL and their parameters queued
  again, so they are the first ones run;
- `n_trials` counts the whole study: only the trials still missing are run;
- job numbers (run dirs, summary rows) continue after the study's trials.
Only for persistent storage (an in-memory study always starts fresh). Concurrent sweepers on
one study (several login nodes) are not supported: their running trials would look stale.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("mrinet.sweep")

try:  # Hydra imports every plugin module at start-up: without the [sweep] extra, define nothing
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:
    OptunaSweeper = None

if OptunaSweeper is not None:

    class MrinetOptunaSweeper(OptunaSweeper):
        """OptunaSweeper resuming an interrupted persistent study (see the module docstring)."""

        def sweep(self, arguments: list[str]) -> Any:
            resume_study(self.sweeper)
            return self.sweeper.sweep(arguments)


def resume_study(impl) -> None:
    """Fail and requeue the stale RUNNING trials of an existing study; shorten n_trials."""
    if not impl.storage:
        return
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
    except KeyError:  # a new study: the sweeper creates it
        return
    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    for trial in stale:
        study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(trial.params))
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # the interrupted trials are queued first and count among the remaining ones
    remaining = max(int(impl.n_trials) - len(done) - len(failed), 0)
    impl.job_idx = len(trials)
    log.info(
        "resuming study %r: %d trial(s) done, %d failed, %d interrupted (run again first); "
        "%d of n_trials=%d to run",
        impl.study_name,
        len(done),
        len(failed),
        len(stale),
        remaining,
        impl.n_trials,
    )
    impl.n_trials = remaining
