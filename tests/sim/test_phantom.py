"""The digital brain phantom: labels, hemispheres, deformation, partial-volume fractions."""

import numpy as np
import pytest

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


def test_freesurfer_labels_callosum_only_in_a_midline_slab():
    from mrinet.sim.phantom import WM, make_brain_anatomy

    shape, voxel = (72, 88, 72), 2.0
    tissue, labels = make_brain_anatomy(shape, voxel, np.random.default_rng(6), 3.0)
    # the tissue is the same anatomy the label-equals-tissue phantom draws from that seed
    assert np.array_equal(tissue, make_brain_phantom(shape, voxel, np.random.default_rng(6)))
    cc_tissue = np.isin(tissue, CC_SEGMENTS)
    cc_label = np.isin(labels, CC_SEGMENTS)
    assert cc_label.sum() < 0.45 * cc_tissue.sum()  # most callosal fibres are off the slab
    relabelled = cc_tissue & ~cc_label
    assert np.isin(labels[relabelled], WM).all()  # ... and FreeSurfer calls them 2/41
    # labelled CC is a few voxels either side of the midline (rotations of +-5 deg included)
    x_mm = (np.nonzero(cc_label)[0] - (shape[0] - 1) / 2) * voxel
    assert np.abs(np.median(x_mm)) < 2.5 and np.percentile(np.abs(x_mm), 95) < 8.0
    # everything else is labelled as its tissue
    assert np.array_equal(labels[~cc_tissue], tissue[~cc_tissue])


@pytest.mark.parametrize("seed", [6, 7])
def test_cc_label_slab_plane_is_flat_and_midline_bends_with_the_anatomy(seed):
    """FreeSurfer's mri_cc labels 2 x 2 + 1 slices about the mid-sagittal plane it fits
    (`cc_label_slab="plane"`); the phantom's midline is warped (+-3 mm), so the default slab,
    which follows it, bends."""
    from mrinet.sim.phantom import make_brain_anatomy

    shape, voxel, half_width = (72, 88, 72), 2.0, 3.0

    def fit_plane(slab: str):
        rng = np.random.default_rng(seed)
        tissue, labels = make_brain_anatomy(shape, voxel, rng, half_width, slab)
        i, j, k = np.nonzero(np.isin(labels, CC_SEGMENTS))
        # the plane through the LABELLED voxels (not the simulator's fit through the tissue)
        design = np.stack([np.ones(i.size), j, k], axis=1)
        coef = np.linalg.lstsq(design, i.astype(float), rcond=None)[0]
        norm = np.sqrt(1 + coef[1] ** 2 + coef[2] ** 2)
        ti, tj, tk = np.nonzero(np.isin(tissue, CC_SEGMENTS))
        tissue_distance = np.abs(ti - np.stack([np.ones(ti.size), tj, tk], 1) @ coef) * voxel / norm
        inside = tissue_distance < half_width - voxel / 2
        return (
            float((np.abs(i - design @ coef) * voxel / norm).max()),
            bool(np.isin(labels[ti[inside], tj[inside], tk[inside]], CC_SEGMENTS).all()),
        )

    flat_extent, flat_filled = fit_plane("plane")
    assert flat_extent <= half_width + voxel / 2 and flat_filled  # every voxel within the slab
    bent_extent, _ = fit_plane("midline")
    assert bent_extent > half_width + voxel / 2  # the default slab bends away from any plane
    for width in (half_width, None):  # checked whether or not a slab is drawn
        with pytest.raises(
            ValueError, match=r"phantom\.cc_label_slab must be 'midline' or 'plane'"
        ):
            make_brain_anatomy((8, 8, 8), voxel, np.random.default_rng(0), width, "curved")
