"""The digital brain phantom: labels, hemispheres, deformation, partial-volume fractions."""

import numpy as np

from mrinet.sim.phantom import (
    CC_SEGMENTS,
    TISSUES,
    make_brain_phantom,
    phantom_affine,
    tissue_fractions,
)

SHAPE, VOXEL = (40, 48, 40), 3.6


def test_phantom_has_every_freesurfer_structure():
    labels = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(0))
    assert labels.shape == SHAPE and labels.dtype == np.int32
    expected = {0, 24, 2, 41, 3, 42, 4, 43, 10, 49, *CC_SEGMENTS}
    assert set(np.unique(labels).tolist()) == expected


def test_left_hemisphere_lies_at_negative_world_x():
    labels = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(1))
    affine = phantom_affine(SHAPE, VOXEL)
    for left, right in ((2, 41), (10, 49), (4, 43)):
        x_left = (affine[:3, :3] @ np.argwhere(labels == left).T)[0] + affine[0, 3]
        x_right = (affine[:3, :3] @ np.argwhere(labels == right).T)[0] + affine[0, 3]
        assert x_left.mean() < 0 < x_right.mean()


def test_cc_segments_run_posterior_to_anterior():
    labels = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(2))
    mean_y = [np.argwhere(labels == code)[:, 1].mean() for code in CC_SEGMENTS]
    assert np.all(np.diff(mean_y) > 0)


def test_subjects_differ_and_seed_reproduces():
    a = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(3))
    b = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(3))
    c = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(4))
    assert np.array_equal(a, b)
    assert np.mean(a != c) > 0.01


def test_fractions_partition_unity_and_blur_borders():
    labels = make_brain_phantom(SHAPE, VOXEL, np.random.default_rng(5))
    hard = tissue_fractions(labels, 0.0)
    soft = tissue_fractions(labels, 1.0)
    assert set(soft) == set(TISSUES)
    np.testing.assert_allclose(sum(soft.values()), 1.0, atol=1e-5)
    assert set(np.unique(hard["cc"]).tolist()) == {0.0, 1.0}
    cc = labels >= 251
    assert 0.2 < soft["cc"][cc].mean() < 0.95  # thin slab: partial volume inside it
