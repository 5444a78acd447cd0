"""A segmentation net in the Classifier: its labelled voxels are the samples of a voxel model."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from mrinet.data.contract import DataSpec
from mrinet.models.classifier import Classifier, labelled_voxels
from mrinet.models.metrics import batch_confusion


class PerVoxelLinear(nn.Module):
    """A 1x1x1 convolution: the same linear map as `rows` applied to every voxel."""

    dense_output = True

    def __init__(self, rows: nn.Linear) -> None:
        super().__init__()
        self.conv = nn.Conv3d(rows.in_features, rows.out_features, 1)
        self.conv.weight.data = rows.weight.data[:, :, None, None, None].clone()
        self.conv.bias.data = rows.bias.data.clone()

    def forward(self, x):
        return self.conv(x)


def models():
    torch.manual_seed(0)
    rows = nn.Linear(4, 3)
    spec = DataSpec(
        classes=["a", "b", "c"],
        input_mean=[1.0, 2.0, 3.0, 4.0],
        input_std=[0.5, 1.0, 2.0, 4.0],
        class_counts=[10, 5, 1],
    )
    optimizer = functools.partial(torch.optim.SGD, lr=0.1)
    voxel = Classifier(rows, optimizer, decision="tuned")
    dense = Classifier(PerVoxelLinear(rows), optimizer, decision="tuned")
    for model in (voxel, dense):
        model.set_data_spec(spec)
        model.logit_offset = torch.tensor([0.3, -0.2, 0.5])
    return voxel, dense


def test_labelled_voxels_equal_an_explicit_loop():
    logits = torch.randn(2, 3, 4, 5, 6)
    target = torch.randint(-1, 3, (2, 4, 5, 6))
    rows, classes = labelled_voxels(logits, target)
    expected = [
        (logits[b, :, i, j, k], target[b, i, j, k])
        for b in range(2)
        for i in range(4)
        for j in range(5)
        for k in range(6)
        if target[b, i, j, k] >= 0
    ]
    assert torch.equal(rows, torch.stack([e[0] for e in expected]))
    assert torch.equal(classes, torch.stack([e[1] for e in expected]))


def test_volumes_are_standardised_per_channel_and_decided_like_rows():
    """Per-feature scaling, offsets and probabilities of a volume equal the voxel model's rows."""
    voxel, dense = models()
    x = torch.randn(2, 4, 3, 5, 4) * 3 + 2
    rows = x.movedim(1, -1).reshape(-1, 4)
    with torch.no_grad():
        assert torch.allclose(dense(x).movedim(1, -1).reshape(-1, 3), voxel(rows), atol=1e-5)
        assert torch.equal(dense.predict_classes(x).reshape(-1), voxel.predict_classes(rows))
        assert torch.allclose(
            dense.predict_proba(x).movedim(1, -1).reshape(-1, 3),
            voxel.predict_proba(rows),
            atol=1e-6,
        )


def test_a_dense_step_counts_only_the_labelled_voxels():
    voxel, dense = models()
    x = torch.randn(1, 4, 6, 5, 4)
    y = torch.randint(-1, 3, (1, 6, 5, 4))
    with torch.no_grad():
        dense_loss = dense._step((x, y), "test")
        keep = y >= 0
        rows = x.movedim(1, -1)[keep]
        voxel_loss = voxel._step((rows, y[keep]), "test")
    assert torch.allclose(dense_loss, voxel_loss)
    assert torch.equal(dense._counts["test"], voxel._counts["test"])
    expected = batch_confusion(voxel.predict_classes(rows), y[keep], 3)
    assert torch.equal(dense._counts["test"], expected)
    assert int(dense._counts["test"].sum()) == int(keep.sum())


def test_soft_dice_of_confident_logits_is_the_macro_dice():
    """With (nearly) one-hot probabilities the soft Dice is the Dice of the hard map:
    scikit-learn's macro F1 of the same predictions."""
    from sklearn.metrics import f1_score

    from mrinet.models.classifier import soft_dice_loss

    torch.manual_seed(1)
    target = torch.randint(0, 3, (500,))
    predicted = torch.where(torch.rand(500) < 0.7, target, torch.randint(0, 3, (500,)))
    logits = 60.0 * torch.nn.functional.one_hot(predicted, 3).double()
    dice = 1 - soft_dice_loss(logits, target, eps=0.0)
    assert float(dice) == pytest.approx(f1_score(target, predicted, average="macro"), abs=1e-9)


def test_soft_dice_loss_gradients_match_finite_differences():
    from mrinet.models.classifier import soft_dice_loss

    logits = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (40,))
    assert torch.autograd.gradcheck(lambda z: soft_dice_loss(z, target), (logits,))
