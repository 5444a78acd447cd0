"""The lazy recon-quality loader: exact fast percentile, plain-offset reads, shared worker buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrinet.data.recon_quality.batches import HDF5Images
from mrinet.data.recon_quality.module import ReconQualityDataModule
from mrinet.data.recon_quality.shared_batches import SharedBatches
from mrinet.data.recon_quality.transforms import normalize_images, row_order_statistics
from mrinet.io.fastmri import write_reconstruction
from mrinet.io.recon_files import ReconFile


def reference_normalize(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """The former implementation: full np.partition of the subgrid, max fallback, division."""
    sample = x
    while sample.shape[-1] * sample.shape[-2] > 1 << 16:
        sample = sample[..., ::2, ::2]
    flat = sample.reshape(x.shape[0], -1).numpy()
    position = percentile / 100.0 * (flat.shape[1] - 1)
    lower = int(np.floor(position))
    upper = min(lower + 1, flat.shape[1] - 1)
    part = np.partition(flat, [lower, upper], axis=1)
    low, high = part[:, lower].astype(np.float64), part[:, upper].astype(np.float64)
    value = torch.from_numpy(low + (position - lower) * (high - low)).to(torch.float32)
    scale = torch.where(value > 0, value, x.reshape(x.shape[0], -1).abs().amax(1))
    return x / scale.clamp(min=1e-12).view(-1, *([1] * (x.ndim - 1)))


def image_cases() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sparse = (torch.rand(4, 1, 320, 320, generator=gen) > 0.995).float()
    # the coarse subsample (every 16th sampled pixel) sees only bright pixels: too few pass
    # its threshold, so the whole image is partitioned
    decoy = torch.rand(3, 1, 64, 64, generator=gen)
    decoy.view(3, -1)[:, ::16] += 10.0
    nan = torch.rand(2, 1, 128, 128, generator=gen)
    nan[0, 0, 4, 6] = float("nan")
    return {
        "uniform": torch.rand(6, 1, 320, 320, generator=gen),
        "ties": torch.randint(0, 4, (4, 1, 96, 96), generator=gen).float(),
        "sparse": sparse * torch.rand(4, 1, 320, 320, generator=gen),
        "zeros": torch.zeros(2, 1, 80, 80),
        "small": torch.rand(3, 1, 40, 36, generator=gen),
        "decoy": decoy,
        "nan": nan,
    }


@pytest.mark.parametrize("percentile", [99.0, 99.9, 90.0, 50.0, 100.0])
def test_fast_percentile_normalisation_equals_a_full_partition_bit_for_bit(percentile):
    for name, x in image_cases().items():
        fast = normalize_images(x, "percentile", percentile)
        slow = reference_normalize(x, percentile)
        assert torch.equal(fast.nan_to_num(-1.0), slow.nan_to_num(-1.0)), name


def test_order_statistics_equal_sorting():
    rng = np.random.default_rng(1)
    sample = rng.gamma(2.0, size=(5, 100, 90)).astype(np.float32)[:, ::2, ::3]  # strided
    n = sample[0].size
    flat = np.sort(sample.reshape(5, -1), axis=1)
    for lower in (n - 1, n - 2, n - 40, n // 2, 0):
        upper = min(lower + 1, n - 1)
        stats = row_order_statistics(sample, lower, upper)
        assert np.array_equal(stats, flat[:, [lower, upper]])


def write_files(root: Path, volumes: int = 3, slices: int = 5, size=(48, 40), **h5_options) -> Path:
    """Random non-negative images for `reference` and `pics_R4`, optionally via h5py options."""
    import h5py

    rng = np.random.default_rng(2)
    for tag in ("reference", "pics_R4"):
        for v in range(volumes):
            images = rng.gamma(2.0, size=(slices, *size)).astype(np.float32)
            path = root / tag / f"vol{v}.h5"
            if h5_options:
                path.parent.mkdir(parents=True, exist_ok=True)
                userblock = h5_options.pop("userblock_size", 0)
                with h5py.File(path, "w", userblock_size=userblock) as f:
                    f.create_dataset("reconstruction", data=images, **h5_options)
                if userblock:
                    h5_options["userblock_size"] = userblock
            else:
                write_reconstruction(path, images, np.ones(size[-1]), {"method": "pics"})
    return root


def module(recon_dir: Path, **kwargs) -> ReconQualityDataModule:
    settings = dict(
        source="files",
        recon_dir=str(recon_dir),
        crop=(48, 40),
        split=(0.4, 0.3, 0.3),
        batch_size=4,
        eval_batch_size=4,
        seed=5,
    )
    settings.update(kwargs)
    dm = ReconQualityDataModule(**settings)
    dm.setup("fit")
    return dm


def epoch(loader, number: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(number)
    return list(loader)


def cat(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize(
    ("layout", "crop"),
    [
        ({}, (48, 40)),  # plain contiguous float32: one pread per image
        ({}, (30, 24)),  # narrower crop: rows read whole, columns cut
        ({"userblock_size": 512}, (48, 40)),  # data offset past a user block
        ({"chunks": (1, 48, 40), "compression": "gzip"}, (48, 40)),  # read via h5py
        ({"dtype": "float64"}, (30, 24)),  # read via h5py
    ],
)
def test_lazy_reads_equal_the_preloaded_images_for_every_layout(tmp_path, layout, crop):
    root = write_files(tmp_path / "recon", **layout)
    eager = module(root, crop=crop, preload=True)
    lazy = module(root, crop=crop, preload=False)
    recon = ReconFile(lazy.indexes["train"].files[0], crop)
    plain = not layout.get("chunks") and layout.get("dtype") is None
    assert (recon.offset is not None) == plain
    recon.close()
    for name in ("train", "val"):
        assert torch.equal(eager.split_images(name)[0], lazy.split_images(name)[0])
    for number in (0, 1):
        x, y = cat(epoch(eager.train_dataloader(), number))
        x_lazy, y_lazy = cat(epoch(lazy.train_dataloader(), number))
        assert torch.equal(x, x_lazy) and torch.equal(y, y_lazy)


def test_a_file_truncated_after_opening_is_a_clear_error(tmp_path):
    from mrinet.errors import DataFormatError

    root = write_files(tmp_path / "recon")
    path = root / "pics_R4" / "vol1.h5"
    recon = ReconFile(path, (48, 40))
    image = np.empty((48, 40), dtype=np.float32)
    recon.read_into(image, 4)
    with open(path, "r+b") as f:
        f.truncate(recon.offset + 4 * image.nbytes + 100)  # into the last slice
    with pytest.raises(DataFormatError, match=r"vol1\.h5"):
        recon.read_into(image, 4)
    recon.close()


def test_two_workers_fill_reused_shared_buffers_without_overwriting_kept_batches(tmp_path):
    root = write_files(tmp_path / "recon", volumes=4, slices=6)
    eager = module(root, preload=True, normalization="percentile")
    lazy = module(root, preload=False, normalization="percentile", num_workers=2)
    batches, loader = eager.train_dataloader(), lazy.train_dataloader()
    assert isinstance(loader, SharedBatches) and loader.num_workers == 2
    expected = [cat(epoch(batches, number)) for number in range(3)]
    kept = epoch(loader, 0)  # every batch held: the pool cannot reuse them
    pool = {s.data_ptr() for s in loader._pool}
    assert any(x.untyped_storage().data_ptr() in pool for x, _ in kept)
    again = [b for b in epoch(loader, 1)]
    assert all(torch.equal(a, b) for a, b in zip(cat(kept), expected[0]))
    assert all(torch.equal(a, b) for a, b in zip(cat(again), expected[1]))
    del kept, again
    # batches dropped as they are used: every one comes from the pool, no copy
    loader.sampler.set_epoch(2)
    xs, ys = [], []
    for x, y in loader:
        assert x.untyped_storage().data_ptr() in pool
        xs.append(x.clone())
        ys.append(y)
        del x
    assert torch.equal(torch.cat(xs), expected[2][0]) and torch.equal(torch.cat(ys), expected[2][1])
    # an abandoned epoch leaves no buffer in flight, and the next one is complete
    loader.sampler.set_epoch(0)
    next(iter(loader))
    assert torch.equal(cat(epoch(loader, 0))[0], expected[0][0])
    val = cat(list(lazy.val_dataloader()))
    assert torch.equal(val[0], eager.split_images("val")[0])


def test_datasets_pickle_without_their_open_files(tmp_path):
    import pickle

    root = write_files(tmp_path / "recon")
    dataset = module(root, preload=False).datasets["train"]
    assert isinstance(dataset, HDF5Images)
    first = dataset.read(np.arange(3))
    assert dataset._files
    copy = pickle.loads(pickle.dumps(dataset))
    assert not copy._files and torch.equal(copy.read(np.arange(3)), first)
    dataset.close()
    assert not dataset._files and torch.equal(dataset.read(np.arange(3)), first)


def test_a_lazy_loader_with_workers_stops_them_as_soon_as_it_is_dropped(tmp_path):
    # a reference cycle through the sampler left the DataLoader to the cyclic garbage
    # collector, which could close its queues before the workers were told to stop: each
    # worker then cost its 5 s join timeout wherever the collector happened to run
    import gc

    root = write_files(tmp_path / "recon", volumes=4, slices=6)
    lazy = module(root, preload=False, normalization="percentile", num_workers=2)
    loader = lazy.train_dataloader()
    for _ in loader:
        pass
    workers = list(loader.loader._iterator._workers)
    assert all(w.is_alive() for w in workers)  # persistent between epochs
    gc.disable()
    try:
        del loader, lazy  # reference counts alone must release the DataLoader
        assert not any(w.is_alive() for w in workers)
    finally:
        gc.enable()
