"""ReconQualityDataModule on reconstruction files written here in the recon/<tag>/<volume>.h5 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrinet.data.recon_quality.module import ReconQualityDataModule
from mrinet.data.recon_quality.transforms import normalize_images, random_flips
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError
from mrinet.io.fastmri import write_reconstruction

TAGS = ("reference", "pics_R4", "pics_R8")


def write_recon_dir(
    root: Path, volumes: int = 5, slices: int = 3, size=(40, 36), image=None
) -> Path:
    """Images whose every pixel encodes (tag, volume, slice) as 1000*tag + 10*volume + slice + 1."""
    for t, tag in enumerate(TAGS):
        for v in range(volumes):
            codes = 1000 * t + 10 * v + np.arange(slices) + 1
            images = np.broadcast_to(codes[:, None, None], (slices, *size)).astype(np.float32)
            if image is not None:
                images = np.broadcast_to(image, (slices, *size))
            write_reconstruction(
                root / tag / f"vol{v:02d}.h5",
                images,
                mask=np.ones(size[-1]),
                attrs={"acceleration": [1, 4, 8][t], "method": "pics"},
            )
    return root


@pytest.fixture
def recon_dir(tmp_path) -> Path:
    return write_recon_dir(tmp_path / "recon")


def module(recon_dir: Path, **kwargs) -> ReconQualityDataModule:
    settings = dict(
        source="files",
        recon_dir=str(recon_dir),
        crop=(32, 32),
        normalization="none",
        split=(0.6, 0.2, 0.2),
        batch_size=4,
        eval_batch_size=8,
        seed=3,
    )
    settings.update(kwargs)
    dm = ReconQualityDataModule(**settings)
    dm.setup("fit")
    return dm


def all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def decode(x: torch.Tensor) -> np.ndarray:
    return x[:, 0, 0, 0].round().long().numpy()


@pytest.mark.parametrize("preload", [True, False])
def test_labels_follow_the_tags_of_each_class(recon_dir, preload):
    dm = module(recon_dir, preload=preload)
    assert dm.preloaded is preload
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = all_batches(loader)
        assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        tag = decode(x) // 1000
        assert np.array_equal(tag, y.numpy())  # reference -> 0, pics_R4 -> 1; R8 not used
        assert set(y.tolist()) == {0, 1}


def test_multiclass_over_several_accelerations(recon_dir):
    dm = module(
        recon_dir,
        classes=["R1", "R4", "R8"],
        class_tags={"R1": ["reference"], "R4": ["pics_R4"], "R8": ["pics_R8"]},
    )
    x, y = all_batches(dm.train_dataloader())
    assert dm.classes == ["R1", "R4", "R8"]
    assert np.array_equal(decode(x) // 1000, y.numpy())
    assert torch.bincount(y).tolist() == [len(y) // 3] * 3


def test_split_by_volume_is_disjoint_and_complete(recon_dir):
    dm = module(recon_dir)
    volumes = {
        name: set(((decode(all_batches(loader)[0]) % 1000) - 1) // 10)
        for name, loader in (
            ("train", dm.train_dataloader()),
            ("val", dm.val_dataloader()),
            ("test", dm.test_dataloader()),
        )
    }
    assert volumes["train"].isdisjoint(volumes["val"]) and volumes["train"].isdisjoint(
        volumes["test"]
    )
    assert volumes["val"].isdisjoint(volumes["test"])
    assert set.union(*volumes.values()) == set(range(5))
    assert [len(volumes[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    # every volume appears with both its reference and its accelerated reconstruction
    _, y = all_batches(dm.val_dataloader())
    assert len(y) == 2 * 3 and y.sum() == 3


def test_an_empty_split_is_an_error(tmp_path):
    root = write_recon_dir(tmp_path / "recon", volumes=2)
    with pytest.raises(ConfigError, match="split"):
        module(root, split=(0.6, 0.2, 0.2))


def test_percentile_normalisation_maps_the_99th_percentile_to_one():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 50, 40, generator=gen) * torch.tensor([1.0, 10.0, 1e4]).view(3, 1, 1, 1)
    out = normalize_images(x, "percentile", 99.0)
    reference = np.percentile(x.flatten(1).numpy(), 99.0, axis=1)
    assert np.allclose(x.flatten(1).numpy() / reference[:, None], out.flatten(1).numpy())
    assert np.allclose(np.percentile(out.flatten(1).numpy(), 99.0, axis=1), 1.0, atol=1e-6)
    assert float(out.min()) >= 0.0  # zero stays zero: background is not shifted
    meanstd = normalize_images(x, "meanstd")
    assert torch.allclose(meanstd.flatten(1).mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(meanstd.flatten(1).std(1), torch.ones(3), atol=1e-5)


def test_served_images_are_normalised_per_image(recon_dir):
    dm = module(recon_dir, normalization="percentile")
    x, _ = all_batches(dm.val_dataloader())
    assert torch.allclose(x, torch.ones_like(x))  # constant images: each divided by itself


def test_flips_only_in_training_and_reproducible(tmp_path):
    ramp = np.arange(32 * 32, dtype=np.float32).reshape(32, 32) + 1  # shows every flip
    root = write_recon_dir(tmp_path / "recon", volumes=5, slices=4, size=(32, 32), image=ramp)
    dm = module(root, crop=(32, 32), flips=["horizontal", "vertical"], preload=True)
    x_train, _ = all_batches(dm.train_dataloader())
    variants = {tuple(img[0, 0, :2].tolist()) + tuple(img[0, -1, :1].tolist()) for img in x_train}
    assert len(variants) == 4  # identity, left-right, up-down, both
    again, _ = all_batches(dm.train_dataloader())
    assert torch.equal(x_train, again)  # same epoch, same seed: same flips
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        x, _ = all_batches(loader)
        assert torch.equal(x, torch.from_numpy(ramp).expand_as(x))
    lazy = module(root, crop=(32, 32), flips=["horizontal", "vertical"], preload=False)
    assert torch.equal(all_batches(lazy.train_dataloader())[0], x_train)


def test_random_flips_touch_about_half_of_the_images():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    out = random_flips(image.repeat(400, 1, 1, 1), ["horizontal"], torch.Generator().manual_seed(1))
    flipped = out[:, 0, 0, 0] == 3
    assert 0.4 < float(flipped.float().mean()) < 0.6
    assert torch.equal(out[flipped], image.flip(-1).expand(int(flipped.sum()), 1, 4, 4))
    assert torch.equal(out[~flipped], image.expand(int((~flipped).sum()), 1, 4, 4))


def test_percentile_of_large_images_is_estimated_on_a_subgrid():
    x = torch.rand(2, 1, 320, 320, generator=torch.Generator().manual_seed(2))
    out = normalize_images(x, "percentile", 99.0)
    exact = np.percentile(x.flatten(1).numpy(), 99.0, axis=1)
    estimate = x.flatten(1)[:, 0] / out.flatten(1)[:, 0]
    assert np.allclose(estimate.numpy(), exact, rtol=2e-3)


def test_training_batches_reshuffle_per_epoch(recon_dir):
    dm = module(recon_dir, flips=[])
    loader = dm.train_dataloader()
    first = decode(all_batches(loader)[0])
    loader.sampler.set_epoch(1)
    second = decode(all_batches(loader)[0])
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


def test_lazy_loader_with_two_workers_serves_the_same_images(recon_dir):
    eager = module(recon_dir, preload=True, flips=[])
    lazy = module(recon_dir, preload=False, flips=[], num_workers=2)
    assert lazy.train_dataloader().num_workers == 2
    for name in ("train_dataloader", "val_dataloader"):
        a = all_batches(getattr(eager, name)())
        b = all_batches(getattr(lazy, name)())
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_missing_tag_and_small_images_are_clear_errors(recon_dir):
    with pytest.raises(DataNotFoundError, match="pics_R2"):
        module(recon_dir, class_tags={"reference": ["reference"], "accelerated": ["pics_R2"]})
    with pytest.raises(DataFormatError, match="smaller than the crop"):
        module(recon_dir, crop=(64, 64))
    with pytest.raises(DataNotFoundError, match="not found"):
        module(recon_dir / "nowhere")


def test_flips_and_order_are_set_per_epoch_and_match_between_loaders(tmp_path):
    ramp = np.arange(32 * 32, dtype=np.float32).reshape(32, 32) + 1
    root = write_recon_dir(tmp_path / "recon", volumes=5, slices=4, size=(32, 32), image=ramp)
    eager = module(root, crop=(32, 32), preload=True)
    lazy = module(root, crop=(32, 32), preload=False)
    batches = eager.train_dataloader()
    assert not isinstance(batches, torch.utils.data.DataLoader)  # slices of one tensor
    epochs = []
    for epoch in (0, 1, 0):
        batches.sampler.set_epoch(epoch)
        x, y = all_batches(batches)
        loader = lazy.train_dataloader()
        loader.sampler.set_epoch(epoch)
        x_lazy, y_lazy = all_batches(loader)
        assert torch.equal(x, x_lazy) and torch.equal(y, y_lazy)
        epochs.append(x)
    assert not torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[0], epochs[2])
    # evaluation batches are views of the preloaded images, never modified
    val = eager.val_dataloader()
    first, _ = next(iter(val))
    assert first.data_ptr() == eager.datasets["val"].images.data_ptr()
