"""Anatomical phantom: real aparc+aseg moved by a non-folding warp, partial volume, bad input."""

import logging

import numpy as np
import pytest

from mrinet.errors import ConfigError
from mrinet.sim.anatomy import atlas as anatomy
from mrinet.sim.anatomy.atlas import MNI_TISSUES, load_atlas
from mrinet.sim.anatomy.fibres import fibre_orientations
from mrinet.sim.anatomy.subject import group_fractions, sample_subject
from mrinet.sim.anatomy.warp import identity_pose, random_pose, rotation_matrix
from mrinet.sim.phantom import phantom_affine

CORTEX = (3, 42, *range(1000, 1036), *range(2000, 2036))
STRUCTURES = {
    "thalamus": (10, 49),
    "corpus_callosum": (251, 252, 253, 254, 255),
    "cerebral_wm": (2, 41),
    "cortex": CORTEX,
}


def _atlas_at(atlas, shape, voxel_mm):
    """The atlas's label at every voxel centre of the grid, looked up with its own affine."""
    affine = phantom_affine(shape, voxel_mm)
    ijk = np.indices(shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:]
    vox = np.rint(np.linalg.inv(atlas.affine)[:3] @ np.vstack([world, np.ones(world.shape[1])]))
    vox = vox.astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(atlas.labels.shape)[:, None]), axis=0)
    out = np.zeros(vox.shape[1], dtype=np.int32)
    out[inside] = atlas.labels[tuple(vox[:, inside])]
    return out.reshape(shape)


def test_atlas_volumes_are_c_ordered_so_gathers_read_views():
    """gather() indexes a volume's C-order flattening: a Fortran-ordered volume (as NIfTI data
    come) would be copied whole at every call (~5x the k-space anatomy's cost)."""
    atlas = load_atlas()
    for name in ("labels", "group", "tissue_codes", "t1"):
        volume = getattr(atlas, name)
        assert volume.flags.c_contiguous, name
        assert np.shares_memory(volume.reshape(-1), volume), name


def test_identity_pose_gives_the_atlas_itself():
    """Under the identity, labels are the atlas's own voxels: every other one over the whole
    brain at 2 mm, every one at 1 mm (odd sizes: voxel centres on the atlas's integer mm)."""
    atlas = load_atlas()
    for shape, voxel_mm in (((77, 109, 87), 2.0), ((41, 41, 41), 1.0)):
        subject = sample_subject(atlas, identity_pose(), shape, voxel_mm)
        np.testing.assert_array_equal(subject.labels, _atlas_at(atlas, shape, voxel_mm))
    whole = _atlas_at(atlas, (77, 109, 87), 2.0)  # the whole brain is inside that grid
    for codes in STRUCTURES.values():
        inside = np.isin(atlas.labels, codes)
        assert np.isin(whole, codes).sum() == pytest.approx(inside.sum() / 8, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_never_folds_and_inverts(seed):
    fov = anatomy.FOV_MM
    pose = random_pose(np.random.default_rng(seed), fov)
    axes = tuple(np.arange(-h, h + 1e-9, 1.5) for h in np.asarray(fov) / 2)  # finer than drawn
    det = pose.warp.jacobian_det(axes)
    assert det.min() > 0.4 and det.max() < 2.5
    u = pose.warp.on_grid(axes)
    assert 0.5 < np.sqrt(np.mean(u**2)) < 4.0  # a few mm
    # invertible: w = y - u(w) by fixed-point iteration returns to y (a contraction: |du| < 1)
    rng = np.random.default_rng(seed)
    for y in rng.uniform(-60, 60, size=(5, 3)):
        w = y.copy()
        for _ in range(60):
            w = y - pose.warp.on_grid(tuple(np.array([c]) for c in w))[:, 0, 0, 0]
        back = w + pose.warp.on_grid(tuple(np.array([c]) for c in w))[:, 0, 0, 0]
        np.testing.assert_allclose(back, y, atol=1e-6)


def test_derivative_is_the_finite_difference():
    """The exact Jacobian the no-folding check uses is the warp's own derivative."""
    pose = random_pose(np.random.default_rng(5), anatomy.FOV_MM)
    axes = (np.array([3.0, 3.001]), np.array([-10.0]), np.array([20.0]))
    u = pose.warp.on_grid(axes)
    du = pose.warp.on_grid(axes, deriv_axis=0)
    np.testing.assert_allclose((u[:, 1] - u[:, 0]) / 0.001, du[:, 0], rtol=1e-3, atol=1e-6)


def test_group_fractions_equal_an_explicit_block_average():
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 4, size=(6, 4, 8))
    got = group_fractions(fine, 2, 4)
    for g in range(4):
        for i in range(3):
            for j in range(2):
                for k in range(4):
                    block = fine[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * k : 2 * k + 2]
                    assert got[g, i, j, k] == pytest.approx(np.mean(block == g))


def test_partial_volume_is_the_1mm_subject_averaged_down():
    """A 2 mm block's tissue fractions and T1 are the same warped subject at 1 mm, averaged."""
    atlas = load_atlas()
    pose = random_pose(np.random.default_rng(7), anatomy.FOV_MM)
    coarse = sample_subject(atlas, pose, (8, 8, 8), 2.0)  # around the ventricles and callosum
    fine = sample_subject(atlas, pose, (16, 16, 16), 1.0)
    names = list(MNI_TISSUES)
    mixed = 0
    for i, j, k in np.ndindex(8, 8, 8):
        block = (slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2), slice(2 * k, 2 * k + 2))
        for name in names:
            assert coarse.fractions[name][i, j, k] == pytest.approx(
                fine.fractions[name][block].mean(), abs=1e-6
            )
        assert coarse.t1[i, j, k] == pytest.approx(fine.t1[block].mean(), rel=1e-5)
        mixed += max(coarse.fractions[n][i, j, k] for n in names) < 1.0
    assert mixed > 50  # boundaries: most voxels here mix tissues


def test_subjects_differ_and_keep_the_atlas_volumes():
    """Nearest-neighbour labels keep the atlas's codes; volumes within 10 % once the subject's
    head size is taken out; no two subjects alike."""
    atlas = load_atlas()
    shape = anatomy.auto_shape(2.0)
    codes = set(np.unique(atlas.labels))
    seen = []
    for seed in range(3):
        pose = random_pose(np.random.default_rng([0, seed]), anatomy.FOV_MM)
        labels = sample_subject(atlas, pose, shape, 2.0).labels
        assert set(np.unique(labels)) <= codes
        for name, group in STRUCTURES.items():
            volume = np.isin(labels, group).sum() * 8.0 / pose.scale
            reference = float(np.isin(atlas.labels, group).sum())
            assert abs(volume / reference - 1.0) < 0.10, (name, seed, volume / reference)
        assert all(not np.array_equal(labels, other) for other in seen)
        seen.append(labels)


def test_bad_anatomy_and_voxel_size_name_the_key():
    with pytest.raises(ConfigError, match=r"phantom\.anatomy"):
        anatomy.resolve_anatomy("mni")
    with pytest.raises(ConfigError, match=r"grid\.voxel_mm"):
        anatomy.check_voxel_mm(0.7)
    from mrinet.sim.dti import simulate

    with pytest.raises(ConfigError, match=r"grid\.voxel_mm"):
        simulate(phantom={"anatomy": "mni_aparc"}, grid={"voxel_mm": 0.8})


def test_missing_atlas_package_says_how_to_install(monkeypatch, caplog):
    monkeypatch.setattr(anatomy, "ATLAS_PACKAGE", "mrinet_no_such_atlas_package")
    with pytest.raises(anatomy.AnatomyUnavailable, match="pip install") as err:
        anatomy.atlas_dir()
    assert "phantom.anatomy" in str(err.value)
    with caplog.at_level(logging.WARNING):
        assert anatomy.resolve_anatomy("auto") == "geometric"
    assert "geometric" in caplog.text


def test_orientations_follow_the_anatomy():
    """Callosum left-right at the midline, brain stem superior-inferior, cingulum along y."""
    atlas = load_atlas()
    i = np.argmin(np.abs(atlas.arc_y - 0.0))
    points = np.array(
        [
            [0.0, 0.0, atlas.arc_z[i]],  # callosal body on the midline
            [-20.0, -20.0, 30.0],  # corticospinal tract, left
            [6.0, 0.0, atlas.arc_z[i] + 8.0],  # cingulum, right
        ]
    ).T
    default = np.tile(np.array([[1.0], [1.0], [1.0]]) / np.sqrt(3), (1, 3))
    fibres = fibre_orientations(atlas, points, np.eye(3), default)
    assert abs(fibres["cc"][0, 0]) > 0.99
    assert abs(fibres["wm"][2, 1]) > 0.9
    assert abs(fibres["wm"][1, 2]) > 0.9
    turned = rotation_matrix(np.deg2rad([0.0, 0.0, 90.0]))  # pose turns the fibres too
    moved = fibre_orientations(atlas, points, turned, default)
    assert abs(moved["cc"][1, 0]) > 0.99


def test_default_cohort_subject_class_means_in_the_cited_ranges():
    """Subject 0 of the default cohort (literature preset, mni_aparc, 2 mm): FA/MD class means
    inside docs/anatomy.md's literature ranges."""
    from scipy.ndimage import binary_erosion

    from mrinet.mri.dti import fit_tensor, select_volumes
    from mrinet.sim.dti import simulate

    sim = simulate("literature", np.random.default_rng([0, 0]), phantom={"anatomy": "mni_aparc"})
    keep = select_volumes(sim["bvals"], 1200.0)
    fit = fit_tensor(
        sim["dwi"][..., keep], sim["bvals"][keep], sim["bvecs"][keep], "wls", sim["mask"]
    )
    fa, md, labels = fit.fa.numpy(), fit.md.numpy(), sim["labels"]

    def mean(values, codes):
        return float(values[np.isin(labels, codes)].mean())

    assert mean(fa, STRUCTURES["corpus_callosum"]) > 0.6
    assert 0.25 <= mean(fa, STRUCTURES["thalamus"]) <= 0.45
    assert mean(fa, CORTEX) < 0.25
    assert 0.35 <= mean(fa, STRUCTURES["cerebral_wm"]) <= 0.55
    assert 0.65 <= mean(md, STRUCTURES["cerebral_wm"]) <= 0.85
    interior = binary_erosion(np.isin(labels, (4, 43)))  # ventricles free of partial volume
    assert 2.7 <= float(md[interior].mean()) <= 3.2
    assert sim["mask"].sum() > (labels > 0).sum()  # the mask holds the unlabelled sulcal CSF


SMALL_COHORT = {
    "phantom": {"anatomy": "mni_aparc"},
    "grid": {"shape": [20, 24, 20], "voxel_mm": 4.0},  # a central 80 x 96 x 80 mm block
    "single_shell": {"n_b0": 2, "n_dirs": 12, "bval": 1000.0},
}


def test_anatomical_cohort_reads_through_the_nifti_path(tmp_path):
    """Subject folders of the anatomical phantom read as real subjects do (data.voxels)."""
    from mrinet.data.tissue.subjects import load_subjects
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    simulate_dti_cohort(tmp_path, 1, seed=3, workers=1, **SMALL_COHORT)
    label_map = {"thalamus": [10, 49], "corpus_callosum": [251, 252, 253, 254, 255]}
    voxels = load_subjects(
        tmp_path,
        ["T1w", "FA", "MD", "AD", "RD"],
        ["thalamus", "corpus_callosum", "cortical_wm"],
        {**label_map, "cortical_wm": [2, 41]},
    )
    assert set(np.unique(voxels.labels)) == {0, 1, 2} and np.isfinite(voxels.features).all()


@pytest.mark.slow
def test_cohort_written_by_two_processes_equals_one(tmp_path):
    """The anatomical cohort is simulated by a process pool; subjects do not depend on it."""
    from mrinet.io.nifti import load_nifti
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    serial = simulate_dti_cohort(tmp_path / "one", 2, seed=3, workers=1, **SMALL_COHORT)
    pooled = simulate_dti_cohort(tmp_path / "two", 2, seed=3, workers=2, **SMALL_COHORT)
    for a, b in zip(serial, pooled):
        for name in ("aparc+aseg.nii.gz", "data.nii.gz", "T1w.nii.gz"):
            np.testing.assert_array_equal(load_nifti(a / name)[0], load_nifti(b / name)[0])


def test_wmparc_splits_white_matter_by_depth_and_keeps_aseg_elsewhere():
    atlas = load_atlas()
    wmparc = anatomy.load_wmparc()
    wm = np.isin(atlas.labels, (2, 41))
    np.testing.assert_array_equal(wmparc[~wm], atlas.labels[~wm])
    codes = set(np.unique(wmparc[wm]))
    assert codes <= {5001, 5002, *range(3001, 3036), *range(4001, 4036)}
    assert {5001, 5002, 3028, 4028} <= codes  # deep WM and superior frontal WM, both sides
    left_near = np.isin(wmparc, range(3001, 3036)).sum()
    assert 0.3 < left_near / (atlas.labels == 2).sum() < 0.9  # FreeSurfer: ~half of WM
    assert not np.isin(wmparc[atlas.labels == 2], range(4001, 4036)).any()  # own hemisphere


def test_simulated_subject_writes_wmparc_on_request(tmp_path):
    from mrinet.io.nifti import load_nifti
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    settings = {**SMALL_COHORT, "phantom": {"anatomy": "mni_aparc", "wmparc": True}}
    (folder,) = simulate_dti_cohort(tmp_path, 1, seed=3, workers=1, **settings)
    labels, wmparc = (load_nifti(folder / n)[0] for n in ("aparc+aseg.nii.gz", "wmparc.nii.gz"))
    wm = np.isin(labels, (2, 41))
    np.testing.assert_array_equal(wmparc[~wm], labels[~wm])
    assert np.isin(wmparc[wm], [5001, 5002, *range(3001, 3036), *range(4001, 4036)]).all()
    with pytest.raises(ConfigError, match=r"phantom\.wmparc"):
        simulate_dti_cohort(tmp_path / "geo", 1, phantom={"wmparc": True})
