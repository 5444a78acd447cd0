"""Mask statistics: centre block, realised acceleration, reproducibility per seed."""

import numpy as np
import pytest
import torch

from mrinet.mri.masks import (
    EquispacedMask,
    PoissonDiscMask,
    RandomMask,
    acceleration_of,
    center_width,
    seed_from_name,
)


@pytest.mark.parametrize("mask_cls", [RandomMask, EquispacedMask])
def test_mask_has_fastmri_centre_block_and_shape(mask_cls):
    mask = mask_cls([0.08], [4])((8, 640, 368), seed=3)
    assert mask.shape == (1, 368) and mask.dtype == torch.float32
    num_low = round(368 * 0.08)
    pad = (368 - num_low + 1) // 2
    assert mask[0, pad : pad + num_low].all()
    assert center_width(mask) >= num_low


def test_centre_block_matches_fastmri_placement():
    subsample = pytest.importorskip("fastmri.data.subsample")
    for cols in (320, 321, 368):
        theirs, num_low = subsample.RandomMaskFunc([0.08], [4])((1, 16, cols, 2), seed=0)
        ours_centre = RandomMask([0.08], [1 / 0.08])  # acceleration 12.5: almost only the centre
        m = ours_centre((16, cols), seed=0)[0]
        centre = torch.zeros(cols)
        pad = (cols - num_low + 1) // 2
        centre[pad : pad + num_low] = 1
        assert torch.all(theirs.reshape(-1)[centre > 0] == 1)
        assert torch.all(m[centre > 0] == 1)


def test_random_mask_mean_acceleration_is_nominal():
    fn = RandomMask([0.08], [4])
    realised = [acceleration_of(fn((320, 320), seed=s)) for s in range(300)]
    sampled_fraction = np.mean([1 / r for r in realised])
    assert abs(sampled_fraction - 0.25) < 0.005
    assert np.std(realised) > 0.05  # random, not a fixed pattern


def test_equispaced_mask_realised_acceleration_close_to_nominal():
    for acc in (4, 8):
        r = acceleration_of(EquispacedMask([0.04 if acc == 8 else 0.08], [acc])((320, 320), seed=1))
        assert abs(r - acc) / acc < 0.05


def test_equispaced_lines_are_evenly_spaced_outside_centre():
    mask = EquispacedMask([0.08], [4])((320, 320), seed=2)[0].numpy()
    idx = np.flatnonzero(mask)
    gaps = np.diff(idx)
    assert set(np.unique(gaps[gaps > 1])) <= {5, 6}


def test_masks_reproducible_per_seed_and_differ_between_seeds():
    fn = RandomMask([0.08, 0.04], [4, 8])
    a, b = (
        fn((320, 320), seed=seed_from_name("vol01")),
        fn((320, 320), seed=seed_from_name("vol01")),
    )
    c = fn((320, 320), seed=seed_from_name("vol02"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert seed_from_name("vol01") == seed_from_name("vol01")


def test_impossible_parameters_raise():
    with pytest.raises(ValueError, match="impossible"):
        RandomMask([0.5], [4])
    with pytest.raises(ValueError, match="equal length"):
        RandomMask([0.08, 0.04], [4])


def test_poisson_disc_mask_reaches_acceleration_with_variable_density():
    mask = PoissonDiscMask(acceleration=4, center_fraction=0.1)((48, 48), seed=0)
    assert mask.shape == (48, 48)
    assert abs(acceleration_of(mask) - 4) / 4 < 0.1
    assert mask[22:27, 22:27].all()
    yy, xx = torch.meshgrid(torch.arange(48) - 24, torch.arange(48) - 24, indexing="ij")
    r = (yy**2 + xx**2).sqrt()
    assert mask[r < 10].mean() > 2 * mask[r > 18].mean()
    assert torch.equal(mask, PoissonDiscMask(4, 0.1)((48, 48), seed=0))


def test_center_width_of_fully_sampled_and_empty_centre():
    assert center_width(torch.ones(1, 40)) == 40
    m = torch.ones(1, 40)
    m[0, 20] = 0
    assert center_width(m) == 0
