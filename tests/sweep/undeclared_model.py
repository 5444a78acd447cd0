"""A user's own model as the sweeper sees it: trains like mrinet's Classifier but declares
nothing about what its validation logs (tests: the check is skipped with a warning and the
first trial's first validation names a metric it does not log)."""

from __future__ import annotations

from mrinet.models.classifier import Classifier


class UndeclaredClassifier(Classifier):
    """mrinet's Classifier without `validation_metrics`."""

    validation_metrics = None
