"""Decision rules: logit adjustment undoes a class-weighted loss; tuned offsets raise macro Dice."""

from __future__ import annotations

import math

import pytest
import torch

from mrinet.models.decision import dice_macro_of, tune_offsets, weighting_offsets


def test_logit_adjustment_changes_the_argmax_the_way_the_priors_say():
    # inverse-frequency weights of a 1 : 9 rare : common split (mean weight 1)
    weights = torch.tensor([5.0, 5.0 / 9.0])
    offsets = weighting_offsets(weights)
    assert offsets.tolist() == pytest.approx([-math.log(5.0), -math.log(5.0 / 9.0)], abs=1e-6)
    # a weighted model's logit margin of 1.0 for the rare class is less than log(9) = 2.2: the
    # unweighted posterior still favours the common class, a margin of 3.0 does not
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert logits.argmax(1).tolist() == [0, 0]
    assert (logits + offsets).argmax(1).tolist() == [1, 0]


def test_unweighted_training_needs_no_adjustment():
    assert weighting_offsets(torch.ones(3)).tolist() == [0.0, 0.0, 0.0]


def test_tuned_offsets_remove_a_known_bias_and_never_lower_macro_dice():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (4000,), generator=gen)
    clean = torch.nn.functional.one_hot(target, 3).float() * 2.0 + torch.randn(
        4000, 3, generator=gen
    )
    biased = clean + torch.tensor([1.5, 0.0, 0.0])  # class 0 called too often
    offsets = tune_offsets(biased, target)
    assert offsets[2] == 0.0  # the reference class keeps its logit
    assert offsets[0] - offsets[1] == pytest.approx(-1.5, abs=0.35)
    before = dice_macro_of(biased.argmax(1), target, 3)
    after = dice_macro_of((biased + offsets).argmax(1), target, 3)
    assert after >= dice_macro_of(clean.argmax(1), target, 3) - 0.01 and after > before + 0.05
