"""mrinet's SLURM launcher: hydra-submitit-launcher's, made safe for a real cluster.

Hydra loads launchers only from the `hydra_plugins` package, so this thin class lives here;
the work is in mrinet.slurm. On top of submitit's launcher it
- checks before submitting anything (mrinet.slurm.partition): sbatch/sinfo on PATH, the
  partition exists, `auto` resources sized from the partition, explicit ones fit a node;
- waits for each job to its real end (mrinet.slurm.jobs): a requeued job is still running, a
  job that ended without a result is a failed job with its SLURM state (never a hang), a job
  pending for a reason that never clears is cancelled;
- cancels its jobs when the launching command is interrupted (Ctrl-C, kill, hang-up);
- in the job: DDP ranks > 0 write no Hydra output dir, and a failed Hydra job exits non-zero so
  SLURM (scontrol, sacct) shows it FAILED, not COMPLETED.
Without the `[sweep]` extra (hydra-submitit-launcher) it says how to install it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

log = logging.getLogger("mrinet.slurm")

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as _SubmititSlurmLauncher,
    )
except ImportError:  # the [sweep] extra is not installed
    _SubmititSlurmLauncher = None

if _SubmititSlurmLauncher is None:
    from hydra.plugins.launcher import Launcher

    class MrinetSlurmLauncher(Launcher):
        """Stands in when hydra-submitit-launcher is missing: a clear error, nothing submitted."""

        def __init__(self, **params: Any) -> None:
            self.params = params

        def setup(self, **kwargs: Any) -> None:
            pass

        def launch(self, job_overrides, initial_job_idx):
            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.errors import ConfigError

            _refuse(
                ConfigError(
                    "hydra/launcher=slurm needs hydra-submitit-launcher and submitit (not installed)",
                    "hydra/launcher",
                    "pip install 'mrinet[sweep]' in the environment the jobs use",
                )
            )

else:

    class MrinetSlurmLauncher(_SubmititSlurmLauncher):
        """submitit's SLURM launcher with checks before, real waiting during, truth after."""

        def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state):
            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.slurm import job_side

            job_side.before_job()
            ret = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
            job_side.after_job(ret)
            return ret

        def _executor(self):
            """submitit's SLURM executor, after the checks (partition, tools, resources)."""
            import submitit
            from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
            from omegaconf import OmegaConf

            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.errors import MrinetError
            from mrinet.slurm import partition

            assert self.config is not None
            try:
                partition.check_tools()
                found = partition.find_partition(self.params.get("partition"))
                self.params = partition.fit_resources(self.params, found)
            except MrinetError as err:
                _refuse(err)
            log.info(
                "SLURM partition %s: per job %d task(s) x %d CPU(s), %d GB, %d GPU(s)",
                found.name,
                int(self.params.get("tasks_per_node") or 1),
                self.params["cpus_per_task"],
                self.params["mem_gb"],
                self.params["gpus_per_node"],
            )
            params = dict(self.params)
            if not params.get("gpus_per_node"):
                params["gpus_per_node"] = None  # no --gpus-per-node line: CPU partitions reject it
            executor = submitit.AutoExecutor(
                cluster="slurm",
                folder=params["submitit_folder"],
                slurm_max_num_timeout=params.get("max_num_timeout", 0),
            )
            base = set(OmegaConf.structured(BaseQueueConf).keys())
            skip = {"submitit_folder", "max_num_timeout", "_target_"}
            executor.update_parameters(
                **{
                    (k if k in base else f"slurm_{k}"): v
                    for k, v in params.items()
                    if k not in skip
                }
            )
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
            return executor

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            from hydra.core.singleton import Singleton
            from hydra.core.utils import filter_overrides

            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.slurm import jobs

            executor = self._executor()
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            job_params = []
            for idx, overrides in enumerate(job_overrides):
                idx = initial_job_idx + idx
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                job_params.append(
                    (
                        list(overrides),
                        "hydra.sweep.dir",
                        idx,
                        f"job_id_for_{idx}",
                        Singleton.get_state(),
                    )
                )
            _, outcomes = jobs.submit_and_wait(
                lambda: executor.map_array(self, *zip(*job_params)),
                lambda js: log.info("submitted SLURM job(s) %s", " ".join(j.job_id for j in js)),
            )
            return [
                _as_job_return(outcome, job_params[i][0], sweep_dir, initial_job_idx + i)
                for i, outcome in enumerate(outcomes)
            ]

        # asynchronous trials (mrinet's Optuna sweeper): one SLURM job per trial, submitted
        # the moment a slot frees; polled with squeue like `launch` waits (mrinet.slurm.jobs)
        poll_s = 2.0

        def start_trials(self) -> None:
            """Check the partition and build the executor once, before the first trial."""
            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.slurm import jobs

            self._trial_executor = self._executor()
            self._watcher = jobs.Watcher()
            self._trials: dict[str, tuple[int, list[str]]] = {}

        def submit_trial(self, overrides: Sequence[str], num: int) -> str:
            """Submit job `num` now; its key (the SLURM job id)."""
            job = submit_job(self, self._trial_executor, overrides, num)
            log.info("submitted SLURM job(s) %s", job.job_id)
            self._watcher.add([job])
            self._trials[job.job_id] = (num, list(overrides))
            return job.job_id

        def poll_trials(self) -> dict[str, JobReturn]:
            """The trials whose jobs ended since the last poll: {key: JobReturn}."""
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            done = {}
            for key, outcome in self._watcher.poll().items():
                num, overrides = self._trials.pop(key)
                done[key] = _as_job_return(outcome, overrides, sweep_dir, num)
            return done

        def cancel_trials(self, keys: Sequence[str]) -> None:
            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.slurm import jobs

            jobs.cancel(list(keys))


def _refuse(err: Exception) -> None:
    """One clear message and exit 1 before anything is submitted (no Hydra traceback)."""
    import sys

    print(f"\nmrinet: {type(err).__name__}: {err}", file=sys.stderr)
    raise SystemExit(1)


def submit_job(launcher, executor, overrides: Sequence[str], num: int, logger=log):
    """Submit Hydra job `num` (the launcher itself is submitit's callable) as one trial of an
    asynchronous sweep, logged to the launcher's `logger`; submitit's job."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides

    logger.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
    return executor.submit(
        launcher,
        list(overrides),
        "hydra.sweep.dir",
        num,
        f"job_id_for_{num}",
        Singleton.get_state(),
    )


def _as_job_return(outcome: object, overrides: list[str], sweep_dir: Path, num: int) -> JobReturn:
    """A job's JobReturn; one that ended without a result becomes a failed JobReturn, recorded
    in its run dir's job.json so summary.csv says failed (with SLURM's state), not incomplete."""
    if isinstance(outcome, JobReturn):
        return outcome
    ret = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=outcome)
    ret.working_dir = str(sweep_dir / str(num))
    # lazy: Hydra imports every plugin module when any app starts
    from mrinet.run.failed_jobs import record_failed_job

    record_failed_job(sweep_dir, num, overrides, f"{type(outcome).__name__}: {outcome}")
    return ret
