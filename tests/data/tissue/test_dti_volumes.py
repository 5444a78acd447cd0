"""DTI volumes for the segmentation CNN: the voxel MLP's subjects, splits, voxels and scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrinet.errors import ConfigError


def datamodule(data_dir, experiment: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            [
                f"experiment={experiment}",
                "data_size=tiny",
                f"paths.data_dir={data_dir}",
                *overrides,
            ],
        )
    return instantiate(cfg.data, _convert_="all")


@pytest.fixture(scope="module")
def modules(data_dir):
    volumes, voxels = datamodule(data_dir, "dti_unet"), datamodule(data_dir, "dti_mlp")
    volumes.setup("fit")
    voxels.setup("fit")
    return volumes, voxels


def test_splits_and_labelled_voxels_are_the_voxel_models(modules):
    """Same subjects per split, and per split exactly the voxel module's class voxels, so the
    two models' Dice are computed over the same voxels."""
    volumes, voxels = modules
    assert volumes.split_units == voxels.split_units
    for split in ("train", "val", "test"):
        counts = volumes._counts(split)
        assert torch.equal(counts, torch.bincount(voxels.data[split]["y"], minlength=3))


def test_data_spec_equals_the_voxel_models(modules):
    volumes, voxels = modules
    a, b = volumes.data_spec(), voxels.data_spec()
    assert a.classes == b.classes and a.class_counts == b.class_counts
    np.testing.assert_allclose(a.input_mean, b.input_mean, rtol=1e-6)
    np.testing.assert_allclose(a.input_std, b.input_std, rtol=1e-6)


def test_volume_voxels_carry_the_voxel_models_features(modules):
    volumes, voxels = modules
    x, y, _ = volumes.volumes["test"][0]
    rows = x[:, y >= 0].T  # C order over the volume, as the voxel module reads masks
    n = len(rows)
    assert torch.equal(rows, voxels.data["test"]["x"][:n])
    assert torch.equal(y[y >= 0], voxels.data["test"]["y"][:n])


def test_crops_are_seeded_by_epoch_and_centred_near_every_class(modules):
    volumes, _ = modules
    loader = volumes.train_dataloader()
    first, again = list(loader), list(loader)
    assert len(first) == volumes.crops_per_epoch // volumes.batch_size
    x, y = first[0]
    k = volumes.crop_size
    assert x.shape == (volumes.batch_size, 5, k, k, k) and y.shape == (volumes.batch_size, k, k, k)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    loader.epoch_fn = lambda: 1
    assert not torch.equal(next(iter(loader))[0], x)
    # class-balanced centres: over many crops each class (the thin callosum too) is in >1/3
    rng = np.random.default_rng(0)
    seen = np.zeros(3)
    for _ in range(60):
        _, yc = loader.crop(rng)
        seen += [(yc == c).any().item() for c in range(3)]
    assert (seen / 60 > 0.33).all(), seen


def test_a_mirrored_crop_is_the_subject_flipped_left_right(modules):
    from mrinet.data.tissue.volume_batches import VolumeCrops

    volumes, _ = modules
    x, y, r_axis = volumes.volumes["train"][0]
    crops = VolumeCrops([(x, y, r_axis)], volumes.crop_size, 1, 1, 0, lambda: 0, mirror=True)
    plain = VolumeCrops([(x, y, r_axis)], volumes.crop_size, 1, 1, 0, lambda: 0, mirror=False)
    flipped = 0
    for seed in range(12):
        (xm, ym), (xp, yp) = (
            crops.crop(np.random.default_rng(seed)),
            plain.crop(np.random.default_rng(seed)),
        )
        if not torch.equal(ym, yp):
            assert torch.equal(ym, yp.flip(r_axis)) and torch.equal(xm, xp.flip(1 + r_axis))
            flipped += 1
    assert 0 < flipped < 12


def test_context_settings_are_refused_with_the_fix():
    from mrinet.data.tissue.volume_module import DTIVolumeDataModule

    with pytest.raises(ConfigError, match=r"data.context=none"):
        DTIVolumeDataModule(context=["coords"])


def test_a_crop_larger_than_the_volumes_names_the_key(data_dir):
    dm = datamodule(data_dir, "dti_unet", "data.crop_size=64")
    with pytest.raises(ConfigError, match=r"data.crop_size"):
        dm.setup("fit")


def test_an_augmented_crop_without_rotation_or_scaling_is_the_plain_crop():
    from mrinet.data.tissue.volume_batches import VolumeCrops

    x, y = torch.randn(2, 20, 22, 24), torch.randint(-1, 3, (20, 22, 24))
    crops = VolumeCrops([(x, y, 0)], 8, 1, 1, 0, lambda: 0, augment_prob=1.0)
    xa, ya = crops.resampled_crop(x, y, [10, 11, 12], np.random.default_rng(0))
    assert torch.allclose(xa, x[:, 6:14, 7:15, 8:16], atol=1e-5)
    assert torch.equal(ya, y[6:14, 7:15, 8:16])


def test_an_augmented_crop_samples_a_rotated_scaled_grid_with_nearest_labels():
    """Maps that are the voxel coordinates themselves (trilinear is exact on them) show where
    each crop voxel was read: an affine map of the crop grid, rotation <= rotate_deg per axis,
    scale within 1 +- scale; the labels are the label volume at the nearest voxel."""
    from mrinet.data.tissue.volume_batches import VolumeCrops

    shape = (40, 40, 40)
    coords = torch.stack(
        torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    )
    y = ((coords[0] // 3 + coords[1] // 5 + coords[2] // 7) % 3).to(torch.int64)
    crops = VolumeCrops(
        [(coords, y, 0)], 9, 1, 1, 0, lambda: 0, augment_prob=1.0, rotate_deg=20, scale=0.1
    )
    xa, ya = crops.resampled_crop(coords, y, [20, 20, 20], np.random.default_rng(3))
    source = xa.reshape(3, -1).T.double()  # where each crop voxel was read (voxels)
    grid = (
        torch.stack(torch.meshgrid(*[torch.arange(9) - 4] * 3, indexing="ij"))
        .reshape(3, -1)
        .T.double()
    )
    design = torch.cat([grid, torch.ones(len(grid), 1, dtype=torch.float64)], 1)
    fit = torch.linalg.lstsq(design, source).solution  # (4, 3): affine map grid -> source
    assert torch.allclose(design @ fit, source, atol=1e-4)
    assert torch.allclose(fit[3], torch.full((3,), 20.0, dtype=torch.float64), atol=1e-4)
    singular = torch.linalg.svdvals(fit[:3])
    assert ((singular > 0.9 - 1e-6) & (singular < 1.1 + 1e-6)).all()
    assert not torch.allclose(fit[:3], torch.eye(3, dtype=torch.float64), atol=1e-2)
    nearest = source.round().long()
    assert torch.equal(ya.reshape(-1), y[nearest[:, 0], nearest[:, 1], nearest[:, 2]])


def test_the_configured_augmentation_reaches_the_training_crops(data_dir):
    dm = datamodule(
        data_dir, "dti_unet", "data.augment_prob=0.5", "data.rotate_deg=7", "data.scale=0.05"
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert (loader.augment_prob, loader.rotate_deg, loader.scale) == (0.5, 7.0, 0.05)
