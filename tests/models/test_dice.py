"""Dice per class and its macro mean, from the confusion matrix, against a hand count."""

from __future__ import annotations

import pytest
import torch

from mrinet.models.metrics import batch_confusion, confusion_metrics


def test_dice_equals_a_hand_count_on_a_small_map():
    # a 3x4 tissue map, classes 0 = thalamus, 1 = corpus callosum, 2 = white matter
    true = torch.tensor([[0, 0, 2, 2], [0, 1, 1, 2], [2, 2, 2, 2]])
    pred = torch.tensor([[0, 2, 2, 2], [0, 1, 2, 2], [0, 2, 2, 1]])
    # by hand: thalamus |T|=3 |P|=3 overlap 2; CC |T|=2 |P|=2 overlap 1; WM |T|=7 |P|=7 overlap 5
    expected = {"thalamus": 2 * 2 / 6, "corpus_callosum": 2 * 1 / 4, "cortical_wm": 2 * 5 / 14}
    names = list(expected)
    metrics = confusion_metrics(batch_confusion(pred, true, 3), names)
    for name, dice in expected.items():
        assert metrics[f"dice_{name}"].item() == pytest.approx(dice, abs=1e-6)
    assert metrics["dice_macro"].item() == pytest.approx(sum(expected.values()) / 3, abs=1e-6)
    assert metrics["acc"].item() == pytest.approx(8 / 12, abs=1e-6)


def test_dice_macro_skips_a_class_absent_from_truth_and_prediction():
    true = torch.tensor([0, 0, 2, 2])
    pred = torch.tensor([0, 0, 2, 2])
    metrics = confusion_metrics(batch_confusion(pred, true, 3), ["a", "b", "c"])
    assert metrics["dice_b"].item() == 0.0  # empty class: no overlap to count
    assert metrics["dice_macro"].item() == pytest.approx(1.0)
