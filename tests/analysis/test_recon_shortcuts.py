"""Trivial-feature baseline: statistics are right, the regression is optimal, shortcuts show."""

from __future__ import annotations

import os

import pytest
import torch

from mrinet.analysis.recon_shortcuts import (
    FEATURE_NAMES,
    feature_baseline,
    fit_logistic_regression,
    grouped_cross_validation,
    image_statistics,
)


def column(features: torch.Tensor, name: str) -> torch.Tensor:
    return features[:, FEATURE_NAMES.index(name)]


def test_image_statistics_on_images_with_known_values():
    constant = torch.full((1, 1, 50, 50), 2.0)
    checker = (torch.arange(50).view(-1, 1) + torch.arange(50)).remainder(2).float()[None, None]
    framed = torch.ones(1, 1, 50, 50)
    framed[..., 4:46, 4:46] = 5.0  # background frame: 8% of 50 = 4 pixels
    f = image_statistics(torch.cat([constant, checker, framed]))
    assert column(f, "background_mean").tolist() == pytest.approx([2.0, 0.5, 1.0])
    assert column(f, "total_variation").tolist()[:2] == pytest.approx([0.0, 2.0])
    assert column(f, "high_frequency_energy").tolist()[:2] == pytest.approx([0.0, 0.5], abs=1e-9)
    assert column(f, "zero_fraction").tolist() == pytest.approx([0.0, 0.5, 0.0])


def test_logistic_regression_reaches_the_optimum():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(200, generator=gen, dtype=torch.float64) > 0).long()
    model = fit_logistic_regression(x, y, num_classes=2, l2=1e-3)
    weight = model.weight.clone().requires_grad_(True)
    bias = model.bias.clone().requires_grad_(True)
    z = (x - model.mean) / model.std
    loss = torch.nn.functional.cross_entropy(z @ weight + bias, y) + 0.5e-3 * weight.pow(2).sum()
    loss.backward()
    assert weight.grad.abs().max() < 1e-6 and bias.grad.abs().max() < 1e-6
    assert (model.predict(x) == y).double().mean() > 0.8


def images(n: int, background: float, gen: torch.Generator) -> torch.Tensor:
    x = torch.rand(n, 1, 32, 32, generator=gen) * 0.1 + background
    x[..., 8:24, 8:24] += 1.0 + torch.rand(n, 1, 1, 1, generator=gen)
    return x


def test_baseline_finds_a_background_shortcut_and_not_a_missing_one():
    gen = torch.Generator().manual_seed(1)

    def split(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([images(60, 0.0, gen), images(60, shift, gen)])
        return x, torch.cat([torch.zeros(60), torch.ones(60)]).long()

    shortcut = feature_baseline({"train": split(0.3), "test": split(0.3)}, num_classes=2)
    assert shortcut["test/acc"] == 1.0
    honest = feature_baseline({"train": split(0.0), "test": split(0.0)}, num_classes=2)
    assert 0.3 < honest["test/acc"] < 0.7 and 0.3 < honest["test/bal_acc"] < 0.7


@pytest.mark.slow
def test_baseline_is_near_chance_on_the_default_simulated_data(data_dir):
    """The default dataset is honest: image statistics alone do not tell reference from R=4."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    shared = os.environ.get("MRINET_DATA_DIR", str(data_dir))  # reuse a generated dataset
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "experiment=recon_quality_cnn",
                f"paths.root_dir={data_dir}",
                "paths.output_dir=.",
                f"paths.data_dir={shared}",
            ],
        )
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    names = ("train", "val", "test")
    splits = [datamodule.split_images(name) for name in names]
    images = torch.cat([x for x, _ in splits])
    labels = torch.cat([y for _, y in splits])
    volumes = [v for name in names for v in datamodule.indexes[name].volumes]
    result = grouped_cross_validation(images, labels, volumes, len(datamodule.classes))
    # 192 images: chance is 0.5 +- 0.04; the plain-reference, fixed-SNR design gave 1.00
    assert result["cv/bal_acc"] < 0.7, result


def test_grouped_cross_validation_never_fits_on_the_held_out_volume():
    """A per-volume shortcut (brightness that differs by volume, not by class) is useless to
    leave-one-volume-out, while a real class difference is found."""
    gen = torch.Generator().manual_seed(2)
    x = torch.cat([images(10, 0.1 * v, gen) for v in range(6) for _ in range(2)])
    volumes = [f"v{v}" for v in range(6) for _ in range(20)]
    labels = torch.tensor([c for _ in range(6) for c in [0] * 10 + [1] * 10])
    honest = grouped_cross_validation(x, labels, volumes, num_classes=2)
    assert honest["cv/groups"] == 6 and honest["cv/bal_acc"] < 0.7
    shifted = x + 2.0 * labels.view(-1, 1, 1, 1)
    assert grouped_cross_validation(shifted, labels, volumes, 2)["cv/bal_acc"] == 1.0
    with pytest.raises(ValueError, match="two volumes"):
        grouped_cross_validation(x, labels, ["v0"] * len(labels), 2)
