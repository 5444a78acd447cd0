"""The one Dice formula and the offset tuning against plain per-class code (issue 26)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mrinet.models.decision import DecisionRule, _best_offset, tune_offsets
from mrinet.models.metrics import batch_confusion, confusion_metrics, dice_from_confusion
from mrinet.predict import dice_against_labels


def per_class_dice(confmat: np.ndarray) -> tuple[list[float], float]:
    """Dice of each class and the macro mean over classes present in the truth, one by one."""
    dice, present = [], []
    for c in range(confmat.shape[0]):
        tp, support, predicted = confmat[c, c], confmat[c].sum(), confmat[:, c].sum()
        dice.append(2.0 * tp / (support + predicted) if support + predicted else 0.0)
        if support:
            present.append(dice[-1])
    return dice, float(np.mean(present)) if present else 0.0


@pytest.mark.parametrize("seed", range(20))
def test_dice_from_confusion_equals_a_per_class_loop(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 7))
    confmat = rng.integers(0, 50, (c, c)) * (rng.random((c, c)) < 0.7)
    confmat[rng.integers(0, c)] = 0  # a class absent from the truth
    dice, macro = dice_from_confusion(torch.from_numpy(confmat))
    want, want_macro = per_class_dice(confmat)
    np.testing.assert_allclose(dice.numpy(), want, rtol=1e-12)
    assert float(macro) == pytest.approx(want_macro, rel=1e-12)
    metrics = confusion_metrics(torch.from_numpy(confmat), [str(i) for i in range(c)])
    assert float(metrics["dice_macro"]) == pytest.approx(want_macro, rel=1e-6)


def test_dice_from_confusion_scores_a_stack_of_matrices_at_once():
    confmats = torch.randint(0, 20, (4, 3, 3))
    dice, macro = dice_from_confusion(confmats)
    for i in range(4):
        want, want_macro = per_class_dice(confmats[i].numpy())
        np.testing.assert_allclose(dice[i].numpy(), want, rtol=1e-12)
        assert float(macro[i]) == pytest.approx(want_macro, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_dice_against_labels_equals_the_per_class_map_comparison(seed):
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]
    truth = rng.integers(-1, 3, (9, 8, 7))  # class d absent from the labels
    predicted = rng.integers(0, 5, (9, 8, 7))
    out = dice_against_labels(predicted, truth, names)
    for k, name in enumerate(names):  # the code this replaced: one pass over the map per class
        p, t = predicted == k + 1, truth == k
        denominator = int(p.sum() + t.sum())
        want = 2.0 * float((p & t).sum()) / denominator if denominator else 0.0
        assert out[f"dice_{name}"] == pytest.approx(want, rel=1e-12)
    present = [out[f"dice_{n}"] for k, n in enumerate(names) if (truth == k).any()]
    assert out["dice_macro"] == pytest.approx(float(np.mean(present)), rel=1e-12)


def _grid_best(logits, target, offsets, c, lo, hi):
    """The best macro Dice over offsets of class c in [lo, hi], trying every breakpoint's
    interval (and both ends) with a per-class Dice loop: the slow, obvious search."""
    others = (logits + offsets).clone()
    others[:, c] = -torch.inf
    t = (others.max(1).values - logits[:, c]).double().sort().values.numpy()
    candidates = [lo, hi, *[(a + b) / 2 for a, b in itertools.pairwise(t)]]
    best = -1.0
    for value in candidates:
        if not lo <= value <= hi:
            continue
        trial = offsets.clone()
        trial[c] = value
        confmat = batch_confusion((logits + trial).argmax(1), target, logits.shape[1]).numpy()
        best = max(best, per_class_dice(confmat)[1])
    return best


@pytest.mark.parametrize("seed", range(8))
def test_best_offset_scores_every_breakpoint_like_a_per_class_search(seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 300, 4
    target = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(target, c)
    offsets = 0.3 * torch.randn(c, generator=g)
    for k in range(c - 1):
        value, score = _best_offset(logits, target, offsets, k, -3.0, 3.0)
        assert -3.0 <= value <= 3.0
        assert score == pytest.approx(_grid_best(logits, target, offsets, k, -3.0, 3.0), abs=1e-5)
        trial = offsets.clone()
        trial[k] = value  # the returned offset reaches the returned score
        confmat = batch_confusion((logits + trial).argmax(1), target, c).numpy()
        assert per_class_dice(confmat)[1] == pytest.approx(score, abs=1e-5)


def test_the_rule_returns_the_counts_of_its_tuned_offsets():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 3, (2000,), generator=g)
    logits = torch.randn(2000, 3, generator=g) + torch.tensor([0.0, 1.0, -1.0])
    rule = DecisionRule("tuned")
    offsets, counts = rule.tune(logits, target, torch.tensor([1.0, 2.0, 0.5]))
    rule.logit_offset = offsets
    assert torch.equal(counts, batch_confusion(rule.decide(logits), target, 3))
    start = -torch.log(torch.tensor([1.0, 2.0, 0.5]))
    assert torch.equal(offsets, tune_offsets(logits, target, start=start))


def test_checkpoints_keep_the_offsets_at_logit_offset_and_old_ones_load_as_argmax():
    from mrinet.data.contract import DataSpec
    from mrinet.models.classifier import Classifier
    from mrinet.nets.mlp import MLP

    spec = DataSpec(classes=("a", "b", "c"), input_shape=(5,), class_weights=(1.0, 2.0, 0.5))
    model = Classifier(MLP(5, [4], 3), torch.optim.Adam, decision="logit_adjusted")
    model.set_data_spec(spec)
    state = model.state_dict()
    assert "logit_offset" in state and not any(k.startswith("decision_rule") for k in state)
    fresh = Classifier(MLP(5, [4], 3), torch.optim.Adam, decision="logit_adjusted")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.logit_offset, model.logit_offset)
    del state["logit_offset"]  # a checkpoint from before the decision rule
    old = Classifier(MLP(5, [4], 3), torch.optim.Adam)
    old.load_state_dict(state)
    assert old.logit_offset.numel() == 0
