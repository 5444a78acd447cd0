"""FSL gradient files, raw-DWI subject reading and label resampling: validation and errors."""

import numpy as np
import pytest

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.dwi import read_bvals_bvecs, read_dwi_subject, write_bvals_bvecs
from mrinet.io.nifti import save_nifti
from mrinet.io.resample import load_labels_on_grid, resample_labels


def _gradients(n=7):
    rng = np.random.default_rng(0)
    bvecs = rng.standard_normal((n, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.array([5.0] + [995.0, 1010.0] * ((n - 1) // 2))[:n]
    bvecs[0] = 0.0
    return bvals, bvecs


def test_bvecs_in_either_layout_read_as_n_by_3(tmp_path):
    bvals, bvecs = _gradients()
    write_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs", bvals, bvecs)
    assert np.loadtxt(tmp_path / "bvecs").shape == (3, 7)
    got_vals, got_vecs = read_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs")
    np.testing.assert_allclose(got_vals, bvals)
    np.testing.assert_allclose(got_vecs, bvecs, atol=1e-8)
    np.savetxt(tmp_path / "bvecs_rows", bvecs)  # N x 3, as some tools write it
    rows = read_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs_rows")[1]
    np.testing.assert_allclose(rows, bvecs)


def test_length_mismatch_names_the_bvecs_file(tmp_path):
    bvals, bvecs = _gradients()
    write_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs", bvals, bvecs[:6])
    with pytest.raises(DataFormatError, match="does not match 7 bvals") as err:
        read_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs")
    assert str(tmp_path / "bvecs") in str(err.value) and "fix:" in str(err.value)


def test_non_unit_weighted_direction_is_an_error(tmp_path):
    bvals, bvecs = _gradients()
    write_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs", bvals, bvecs * 1.5)
    with pytest.raises(DataFormatError, match="not unit"):
        read_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs")


def test_missing_gradient_file_is_data_not_found(tmp_path):
    with pytest.raises(DataNotFoundError, match="gradient file not found"):
        read_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs")


def test_dwi_with_more_volumes_than_bvals_says_which_and_how(tmp_path):
    bvals, bvecs = _gradients()
    save_nifti(tmp_path / "data.nii.gz", np.ones((3, 4, 5, 8), np.float32), np.eye(4))
    write_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs", bvals, bvecs)
    with pytest.raises(DataFormatError, match="8 volumes but bvals lists 7") as err:
        read_dwi_subject(tmp_path)
    assert "one entry per volume" in str(err.value)


def test_mask_on_another_grid_is_rejected(tmp_path):
    bvals, bvecs = _gradients()
    save_nifti(tmp_path / "data.nii.gz", np.ones((3, 4, 5, 7), np.float32), np.eye(4))
    write_bvals_bvecs(tmp_path / "bvals", tmp_path / "bvecs", bvals, bvecs)
    save_nifti(tmp_path / "nodif_brain_mask.nii.gz", np.ones((3, 4, 6), np.uint8), np.eye(4))
    with pytest.raises(DataFormatError, match="brain mask"):
        read_dwi_subject(tmp_path)
    (tmp_path / "nodif_brain_mask.nii.gz").unlink()
    dwi, _, _, _, mask = read_dwi_subject(tmp_path)
    assert dwi.shape == (3, 4, 5, 7) and mask is None


def test_label_resampling_equals_nibabel_nearest_neighbour():
    processing = pytest.importorskip("nibabel.processing")
    import nibabel as nib

    rng = np.random.default_rng(1)
    fine = rng.integers(0, 60, size=(40, 46, 38)).astype(np.int32)
    fine_affine = np.diag([-0.7, 0.7, 0.7, 1.0])
    fine_affine[:3, 3] = [13.3, -15.1, -12.9]
    coarse_affine = np.diag([-1.25, 1.25, 1.25, 1.0])
    coarse_affine[:3, 3] = [12.71, -14.43, -12.17]
    ours = resample_labels(fine, fine_affine, (22, 26, 21), coarse_affine)
    ref = processing.resample_from_to(
        nib.Nifti1Image(fine, fine_affine), ((22, 26, 21), coarse_affine), order=0, cval=0
    )
    np.testing.assert_array_equal(ours, np.asarray(ref.dataobj))


def test_labels_on_another_grid_need_resampling_to_be_asked_for(tmp_path):
    labels = np.zeros((8, 8, 8), np.int32)
    labels[2:6, 2:6, 2:6] = 10
    save_nifti(tmp_path / "aparc+aseg.nii.gz", labels, np.diag([0.5, 0.5, 0.5, 1.0]))
    coarse = np.diag([1.0, 1.0, 1.0, 1.0])
    with pytest.raises(DataFormatError, match="resample_labels=true"):
        load_labels_on_grid(tmp_path / "aparc+aseg.nii.gz", (4, 4, 4), coarse)
    out = load_labels_on_grid(tmp_path / "aparc+aseg.nii.gz", (4, 4, 4), coarse, resample=True)
    assert out.dtype == np.int32
    assert np.all(out[1:3, 1:3, 1:3] == 10)
    assert out[0, 0, 0] == 0 and out[3, 3, 3] == 0
