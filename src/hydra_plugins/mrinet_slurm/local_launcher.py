"""mrinet's local launcher: hydra-submitit-launcher's (one process per job on this machine),
plus asynchronous trials for mrinet's Optuna sweeper: a job is started the moment a slot frees
instead of batch by batch (`launch`, for grid sweeps, is submitit's as before)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn

log = logging.getLogger("mrinet.sweep")

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher as _SubmititLocalLauncher,
    )
except ImportError:  # the [sweep] extra is not installed: configs/hydra/launcher/local.yaml
    _SubmititLocalLauncher = None  # fails first (its defaults need submitit_local)

if _SubmititLocalLauncher is not None:

    class MrinetLocalLauncher(_SubmititLocalLauncher):
        """submitit's local launcher with submit/poll/cancel for asynchronous trials."""

        poll_s = 0.5

        def start_trials(self) -> None:
            """Build submitit's local executor once, before the first trial."""
            import submitit
            from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
            from omegaconf import OmegaConf

            assert self.config is not None
            executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            skip = {"submitit_folder", "max_num_timeout", "_target_"}
            executor.update_parameters(
                **{
                    (k if k in base else f"local_{k}"): v
                    for k, v in self.params.items()
                    if k not in skip
                }
            )
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            self._executor = executor
            self._jobs: dict[str, tuple[Any, int, list[str]]] = {}

        def submit_trial(self, overrides: Sequence[str], num: int) -> str:
            """Start job `num` now, in its own process; its key."""
            from hydra_plugins.mrinet_slurm.slurm_launcher import submit_job

            job = submit_job(self, self._executor, overrides, num, logger=log)
            key = str(job.job_id)
            self._jobs[key] = (job, num, list(overrides))
            return key

        def poll_trials(self) -> dict[str, JobReturn]:
            """The trials whose processes ended since the last poll: {key: JobReturn}."""
            from hydra_plugins.mrinet_slurm.slurm_launcher import _as_job_return

            done = {}
            for key, (job, num, overrides) in list(self._jobs.items()):
                if not job.done():
                    continue
                try:
                    outcome: object = job.results()[0]
                except Exception as err:  # the process died without a result
                    text = str(err).strip().splitlines()
                    outcome = RuntimeError(
                        f"local job {key} ended without a result: {text[-1][:300] if text else err}"
                    )
                del self._jobs[key]
                done[key] = _as_job_return(
                    outcome, overrides, Path(str(self.config.hydra.sweep.dir)), num
                )
            return done

        def cancel_trials(self, keys: Sequence[str]) -> None:
            for key in keys:
                entry = self._jobs.pop(key, None)
                if entry is not None:
                    entry[0].cancel(check=False)
