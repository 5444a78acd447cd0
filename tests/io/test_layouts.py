"""Real folder layouts: an HCP 1200 subject as downloaded, FreeSurfer .mgz label volumes."""

from __future__ import annotations

import numpy as np
import pytest

from mrinet.errors import DataFormatError, DataNotFoundError

TINY = {
    "grid": {"shape": [24, 28, 22], "voxel_mm": 6.0},
    "single_shell": {"n_b0": 2, "n_dirs": 12, "bval": 1000.0},
}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """The same simulated subject written flat and as an HCP release subject."""
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    root = tmp_path_factory.mktemp("layouts")
    flat = simulate_dti_cohort(root / "flat", subjects=1, seed=3, **TINY)[0]
    hcp = simulate_dti_cohort(root / "hcp", subjects=1, seed=3, layout="hcp", **TINY)[0]
    return {"flat": flat, "hcp": hcp}


def test_simulator_writes_the_hcp_release_tree(cohorts):
    from mrinet.sim.dti_dataset import HCP_SUBJECT_FILES

    hcp = cohorts["hcp"]
    assert all((hcp / rel).is_file() for rel in HCP_SUBJECT_FILES)
    assert not (hcp / "FA.nii.gz").exists()  # HCP ships no tensor maps


def test_hcp_layout_loads_maps_and_labels_from_a_simulated_hcp_tree(cohorts):
    from mrinet.data.tissue.dwi_features import dwi_feature_maps
    from mrinet.io.layouts import HCP
    from mrinet.io.nifti import load_nifti
    from mrinet.io.resample import load_labels_on_grid

    maps, affine = dwi_feature_maps(cohorts["hcp"], layout="hcp")
    flat_labels, flat_affine = load_nifti(cohorts["flat"] / "aparc+aseg.nii.gz", 3, np.int32)
    np.testing.assert_allclose(affine, flat_affine)
    # aparc+aseg sits on a 2x finer grid; nearest neighbour brings back the diffusion-grid labels
    label_path = HCP.label_path(cohorts["hcp"], "aparc+aseg.nii.gz")
    assert load_nifti(label_path, 3)[0].shape == tuple(2 * n for n in flat_labels.shape)
    labels = load_labels_on_grid(label_path, flat_labels.shape, affine, resample=True)
    np.testing.assert_array_equal(labels, flat_labels)
    # the tensors fitted from T1w/Diffusion equal the flat folder's written maps
    for name in ("FA", "MD"):
        written, _ = load_nifti(cohorts["flat"] / f"{name}.nii.gz", 3)
        np.testing.assert_allclose(maps[name], written, atol=1e-4, err_msg=name)
    t1w, _ = load_nifti(cohorts["flat"] / "T1w.nii.gz", 3)
    np.testing.assert_array_equal(maps["T1w"], t1w)


@pytest.mark.parametrize(
    "missing",
    ["T1w/Diffusion/bvecs", "T1w/T1w_acpc_dc_restore_1.25.nii.gz", "T1w/aparc+aseg.nii.gz"],
)
def test_hcp_subject_missing_a_file_names_it_and_the_fix(cohorts, tmp_path, missing):
    import shutil

    from mrinet.io.layouts import check_hcp_subject

    subject = tmp_path / "100307"
    shutil.copytree(cohorts["hcp"], subject)
    (subject / missing).unlink()
    with pytest.raises(DataNotFoundError, match="HCP subject 100307 has no") as info:
        check_hcp_subject(subject)
    assert missing in str(info.value) and "data.layout=flat" in str(info.value)


def test_mgz_round_trip_keeps_labels_and_affine(tmp_path):
    from mrinet.io.nifti import load_nifti, save_nifti

    labels = np.random.default_rng(0).choice([0, 2, 41, 251, 4035], size=(5, 6, 7)).astype(np.int64)
    affine = np.diag([-1.25, 1.25, 1.25, 1.0])
    affine[:3, 3] = [90.0, -126.0, -72.0]
    path = save_nifti(tmp_path / "aparc+aseg.mgz", labels, affine)
    back, back_affine = load_nifti(path, ndim=3, dtype=np.int32)
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(back_affine, affine, atol=1e-5)


def test_mgz_is_found_where_a_nifti_label_file_is_configured(tmp_path):
    from mrinet.io.nifti import save_nifti
    from mrinet.io.subjects import read_label_volume

    labels = np.full((4, 4, 4), 41, dtype=np.int32)
    save_nifti(tmp_path / "aparc+aseg.mgz", labels, np.eye(4))
    read = read_label_volume(tmp_path / "aparc+aseg.nii.gz", (4, 4, 4), np.eye(4))
    np.testing.assert_array_equal(read, labels)


def test_mgz_on_another_grid_without_resampling_names_the_fix(tmp_path):
    from mrinet.io.nifti import save_nifti
    from mrinet.io.resample import load_labels_on_grid

    path = save_nifti(
        tmp_path / "aparc+aseg.mgz", np.zeros((8, 8, 8), np.int32), np.diag([0.7, 0.7, 0.7, 1.0])
    )
    with pytest.raises(DataFormatError, match="differs from the diffusion grid") as info:
        load_labels_on_grid(path, (4, 4, 4), np.diag([1.4, 1.4, 1.4, 1.0]))
    assert "aparc+aseg.mgz" in str(info.value) and "data.resample_labels=true" in str(info.value)
