"""Is a pruned sweep's optimized_metric logged in validation? Checked before any trial runs.

A pruner compares trials by `optimized_metric` after every validation epoch, so a metric the
model never logs there would fail the first trial at its first validation. mrinet's models
declare what their validation logs (`validation_metrics(class_names)`, a classmethod built
from the same names their epoch end logs; tests/sweep/test_validation_metrics.py runs each one
to keep them equal); the sweeper reads the trial config's `model._target_` class, without
building the data or the model, and checks the metric against it. A model without the
declaration (a user's own LightningModule) is not checked: a warning says so.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mrinet.errors import ConfigError

log = logging.getLogger("mrinet.sweep")


def declared_metrics(model_class: type, cfg: DictConfig) -> list[str] | None:
    """The model class's declared validation metrics for this config (None: no declaration)."""
    declare = getattr(model_class, "validation_metrics", None)
    if not callable(declare):
        return None
    # class names as the trial will have them, if the config says (else per-class patterns)
    classes = None
    for key in ("model.class_names", "data.classes"):
        try:
            node = OmegaConf.select(cfg, key, default=None)
            classes = None if node is None else OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation only a job can resolve: per-class patterns
            classes = None
        if classes is not None:
            break
    return list(declare(None if classes is None else [str(c) for c in classes]))


def logged(metric: str, names: list[str]) -> bool:
    """`metric` is one of `names` (which may hold `*` patterns for per-class metrics)."""
    return any(metric == n or ("*" in n and fnmatch.fnmatchcase(metric, n)) for n in names)


def check_pruned_metric(cfg: DictConfig, pruner: str, what: str = "the trials' model") -> None:
    """ConfigError when `optimized_metric` is not among what the config's model logs in
    validation; a warning (no error) when the model declares nothing or cannot be imported."""
    metric = OmegaConf.select(cfg, "optimized_metric", default=None)
    target = OmegaConf.select(cfg, "model._target_", default=None)
    if metric is None or target is None:
        return
    model_class = _locate(str(target))
    if model_class is None:
        log.warning(
            "pruner=%s: model._target_ %r cannot be imported here, so optimized_metric %r "
            "was not checked against what it logs in validation",
            pruner,
            target,
            metric,
        )
        return
    names = declared_metrics(model_class, cfg)
    if names is None:
        log.warning(
            "pruner=%s: %s (%s) declares no validation_metrics(class_names), so "
            "optimized_metric %r was not checked before the trials: a trial fails at its first "
            "validation if the model does not log it (declare it as mrinet's Classifier does)",
            pruner,
            what,
            target,
            metric,
        )
        return
    if not logged(str(metric), names):
        shown = ", ".join(names)
        raise ConfigError(
            f"pruner={pruner} compares trials by optimized_metric after every validation "
            f"epoch, but {metric!r} is never logged in validation by {what} "
            f"({target}; it logs: {shown})",
            "optimized_metric",
            f"optimized_metric=<one of those> (with optimized_mode to match), e.g. "
            f"optimized_metric={_suggest(names)}, or hydra.sweeper.pruner=none",
        )


def _suggest(names: list[str]) -> str:
    for preferred in ("val/dice_macro", "val/loss"):
        if preferred in names:
            return preferred
    return next((n for n in names if "*" not in n), names[0])


def _locate(target: str) -> Any:
    """The class `target` names, or None if it cannot be imported."""
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception:  # ImportError, ValueError: the trial itself reports it
        return None
