"""The study's sampler and pruner from `hydra.sweeper.sampler` / `pruner` and their options."""

from __future__ import annotations

from typing import Any

from mrinet.errors import ConfigError
from mrinet.run.search_space import Param, is_int_dist
from mrinet.run.study import KEY

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")
PRUNERS = ("none", "median", "hyperband", "successive_halving")


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
            elif is_int_dist(dist) and not dist.log:
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
