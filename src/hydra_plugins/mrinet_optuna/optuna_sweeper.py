"""mrinet's Optuna sweeper: Optuna's ask-and-tell API (Optuna >= 4) on Hydra 1.3.

Replaces hydra-optuna-sweeper (stuck on optuna < 3) with the same config surface
(configs/hydra/sweeper/optuna.yaml: params in Hydra's sweep grammar, direction, n_trials, n_jobs,
max_failure_rate, sampler + seed, storage, study_name) and adds:
- asynchronous trials: with mrinet's local and SLURM launchers, `n_jobs` trials run at once and
  the next one is asked for and started the moment one ends (the sampler sees every finished
  trial at each ask); other launchers (Hydra's basic one) run trials one after the other;
- pruning (`pruner=median|hyperband|successive_halving`): each trial reports its
  optimized_metric per validation epoch to the study, from wherever it runs, and stops on
  the pruner's word (mrinet.callbacks.optuna_pruning);
- shared studies: `storage=journal:<path>` (Optuna's journal file, safe on NFS) or an RDB URL;
  several sweepers can feed one study at once: trial numbers are job numbers (run dirs never
  collide), `n_trials` counts the whole study, and only trials whose sweeper stopped beating
  are failed and run again (mrinet.run.liveness);
- resume: the same command again continues an interrupted study, its interrupted trials first.
Settings are checked before the first trial: each bad one is a clear error naming its key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mrinet_optuna.trials import TrialLoop

log = logging.getLogger("mrinet.sweep")


def _refuse(err: Exception) -> None:
    """One clear message and exit 1 before anything runs (no Hydra traceback)."""
    import sys

    print(f"\nmrinet: {type(err).__name__}: {err}", file=sys.stderr)
    raise SystemExit(1)


class MrinetOptunaSweeper(TrialLoop, Sweeper):
    """Hydra sweeper on Optuna's ask-and-tell API (see the module docstring)."""

    def __init__(
        self,
        params: Any = None,
        direction: str = "maximize",
        study_name: str | None = None,
        storage: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        sampler: Any = "tpe",
        seed: int | None = None,
        sampler_options: Any = None,
        pruner: str | None = "none",
        pruner_options: Any = None,
        heartbeat_s: float = 30.0,
        grace_s: float = 120.0,
        async_trials: bool = True,
    ) -> None:
        def plain(value: Any) -> Any:
            return (
                OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            )

        self.params = plain(params) or {}
        self.direction = str(direction)
        self.study_name = study_name
        self.storage = storage
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.max_failure_rate = max_failure_rate
        self.sampler_name, self.seed = plain(sampler), seed
        self.sampler_options = plain(sampler_options) or {}
        self.pruner_name = "none" if pruner in (None, False) else str(pruner)
        # the config declares every pruner's keys as null: pass the ones given
        self.pruner_options = {
            k: v for k, v in (plain(pruner_options) or {}).items() if v is not None
        }
        self.heartbeat_s, self.grace_s = float(heartbeat_s), float(grace_s)
        self.async_trials = bool(async_trials)
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------ checks, before any trial

    def _check_numbers(self) -> None:
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.errors import ConfigError

        key = "hydra.sweeper"
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"unknown direction {self.direction!r}",
                f"{key}.direction",
                "set optimized_mode=max|min (the search configs derive direction from it)",
            )
        for name, low in (("n_trials", 1), ("n_jobs", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"{name} must be an integer >= {low}, got {value!r}",
                    f"{key}.{name}",
                    f"{key}.{name}=<integer >= {low}>",
                )
        rate = self.max_failure_rate
        if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
            raise ConfigError(
                f"max_failure_rate must be a number in [0, 1], got {rate!r}",
                f"{key}.max_failure_rate",
                f"{key}.max_failure_rate=0.5 (stop when more than half the trials fail)",
            )
        if not self.study_name:
            raise ConfigError(
                "the study has no name", f"{key}.study_name", f"{key}.study_name=<name>"
            )

    def _in_process(self) -> bool:
        return type(self.launcher).__name__ == "BasicLauncher"

    def _async(self) -> bool:
        return all(
            hasattr(self.launcher, m)
            for m in ("start_trials", "submit_trial", "poll_trials", "cancel_trials")
        )

    def _prepare(self, arguments: list[str]) -> None:
        """Everything that can be wrong, checked before the study is touched."""
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.errors import ConfigError
        from mrinet.run.samplers import make_pruner, make_sampler
        from mrinet.run.search_space import search_space
        from mrinet.run.study import open_storage, open_study, parse_storage

        assert self.config is not None
        self._check_numbers()
        self.space, self.fixed = search_space(
            self.params, list(arguments), self.hydra_context.config_loader
        )
        if not self.space:
            raise ConfigError(
                "nothing to search: no parameter with choice(), range() or interval()",
                "hydra.sweeper.params",
                "add e.g. hydra.sweeper.params.model.optimizer.lr='tag(log, interval(1e-4, 1e-2))'",
            )
        options = dict(self.sampler_options)
        if str(self.sampler_name).lower() == "tpe" and self.n_jobs > 1:
            # parallel asks: running trials count as "lies", so no two ask the same point
            options.setdefault("constant_liar", True)
        self.sampler = make_sampler(self.sampler_name, self.seed, options, self.space)
        self.pruner = make_pruner(self.pruner_name, self.pruner_options)
        pruning = self.pruner_name.lower() != "none"
        metric = OmegaConf.select(self.config, "optimized_metric", default=None)
        if pruning and metric is not None and not str(metric).startswith("val"):
            raise ConfigError(
                f"pruner={self.pruner_name} compares trials by optimized_metric per validation "
                f"epoch, but {metric!r} is not a validation metric",
                "optimized_metric",
                "set optimized_metric to a val/... metric the model logs (e.g. val/loss, "
                "val/dice_macro), or hydra.sweeper.pruner=none",
            )
        launch_dir = OmegaConf.select(self.config, "hydra.runtime.cwd", default=None) or "."
        self.spec = parse_storage(self.storage, launch_dir)
        if pruning and self.spec.kind == "memory" and not self._in_process():
            raise ConfigError(
                f"pruner={self.pruner_name} needs a storage the trials' processes can reach: "
                f"an in-memory study lives only in this process ({type(self.launcher).__name__} "
                "runs trials elsewhere)",
                "hydra.sweeper.storage",
                "hydra.sweeper.storage=journal:./optuna.journal (or an RDB URL such as "
                "sqlite:///optuna.db)",
            )
        probes = self._validate_probe()
        if pruning:
            # lazy: Hydra imports every plugin module when any app starts
            from mrinet.run.validation_metrics import check_pruned_metric

            for pick, cfg in probes:  # each model the search can pick
                where = f"the trials' model ({pick})" if pick else "the trials' model"
                check_pruned_metric(cfg, self.pruner_name, where)
        self.store = open_storage(self.spec)
        self.study = open_study(
            self.store, str(self.study_name), self.direction, self.sampler, self.pruner
        )

    def _validate_probe(self) -> list[tuple[str, DictConfig]]:
        """Compose one job's config (first choice / lower bound of each parameter), and one per
        other choice of a parameter that picks the model (`model`, `model._target_`,
        `experiment`):
        [(that choice's override, or "" for the first config, composed config)]."""
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.errors import ConfigError

        def first(p: Any) -> str:
            dist = p.distribution
            return p.override(dist.choices[0] if hasattr(dist, "choices") else dist.low)

        def picks_model(p: Any) -> bool:
            key = p.key.lstrip("+~")
            model = key in ("model", "experiment", "model._target_")
            return model and hasattr(p.distribution, "choices")

        base = [*self.fixed, *(first(p) for p in self.space)]
        picks = [i for i, p in enumerate(self.space) if picks_model(p)]
        probes = [(" ".join(base[len(self.fixed) + i] for i in picks), base)]
        for i in picks:
            for choice in self.space[i].distribution.choices[1:]:
                probe = list(base)
                probe[len(self.fixed) + i] = self.space[i].override(choice)
                probes.append((probe[len(self.fixed) + i], probe))
        loader = self.hydra_context.config_loader
        try:
            return [
                (pick, loader.load_sweep_config(master_config=self.config, sweep_overrides=probe))
                for pick, probe in probes
            ]
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"the sweep's overrides do not compose into a config: {first}",
                "hydra.sweeper.params",
                "check each swept key exists in the config (prefix + to add a new one)",
            ) from None

    # ------------------------------------------------------------ the sweep

    def sweep(self, arguments: list[str]) -> Any:
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.errors import MrinetError
        from mrinet.run.liveness import Heartbeat

        try:
            self._prepare(arguments)
        except MrinetError as err:
            _refuse(err)
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._tell_jobs()
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.sweep_dir = sweep_dir
        self.heartbeat = Heartbeat(self.study, self.heartbeat_s)
        persistent = self.spec.kind != "memory"
        if persistent:
            self.heartbeat.start()
        self.done_here = self.failed_here = 0
        self.stop_reason: str | None = None
        # lazy: Hydra imports every plugin module when any app starts
        from mrinet.slurm.jobs import interrupt_on_signals

        # SIGTERM/SIGHUP (kill, a closed login session) end the sweep as Ctrl-C does: the
        # trials in flight are cancelled and marked interrupted, to run first on resume
        try:
            with interrupt_on_signals():
                self._recover(first=True)
                if self._async() and not self._in_process() and self.async_trials:
                    self._run_async()
                elif not self._in_process() and self.n_jobs > 1:
                    self._run_batches()
                else:
                    if self.n_jobs > 1:
                        log.info(
                            "%s runs one trial at a time (n_jobs=%d ignored): use "
                            "hydra/launcher=local or slurm for parallel, asynchronous trials",
                            type(self.launcher).__name__,
                            self.n_jobs,
                        )
                    self._run_sequential()
        finally:
            if persistent:
                self.heartbeat.stop()
        self._report_best()
        if self.stop_reason and "optimized_metric" in self.stop_reason:
            _refuse(
                MrinetError(
                    self.stop_reason,
                    "optimized_metric",
                    "set optimized_metric to a metric the model logs in validation (the error "
                    "lists them), or hydra.sweeper.pruner=none",
                )
            )
        if self.stop_reason:
            _refuse(
                MrinetError(
                    self.stop_reason,
                    "hydra.sweeper.max_failure_rate",
                    "fix the failing trials (see summary.csv) or raise "
                    "hydra.sweeper.max_failure_rate",
                )
            )
        return None

    def _report_best(self) -> None:
        from optuna.trial import TrialState

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            log.warning("no trial of study %r completed", self.study_name)
            return
        best = self.study.best_trial
        log.info("Best value: %s (trial %d)", best.value, best.number)
        log.info("Best parameters: %s", best.params)
        with open(self.sweep_dir / "optimization_results.yaml", "w") as f:
            OmegaConf.save(
                OmegaConf.create(
                    {
                        "name": "optuna",
                        "study_name": self.study_name,
                        "best_trial": best.number,
                        "best_value": best.value,
                        "best_params": {k: _plain(v) for k, v in best.params.items()},
                    }
                ),
                f,
            )


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
