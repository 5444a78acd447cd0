"""Bad subject folders and NIfTI files through `mrinet.train`: one clear message, exit 1."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tests.helpers import QUIET, SHAPE, assert_clear, guarded_run, subject_maps

NIFTI = ["experiment=dti_mlp", "data.source=nifti", "data.split=[0.5,0.25,0.25]", *QUIET]


def nifti_run(subjects_dir, paths_for, capsys, *extra: str) -> str:
    overrides = [*NIFTI, f"data.subjects_dir={subjects_dir}", *paths_for(), *extra]
    return guarded_run("train", overrides, capsys)


def test_empty_subjects_dir(tmp_path, paths_for, capsys):
    (tmp_path / "empty").mkdir()
    err = nifti_run(tmp_path / "empty", paths_for, capsys)
    assert_clear(err, "no subject folders found", tmp_path / "empty")


def test_subject_missing_one_map(cohort, paths_for, capsys):
    (cohort / "sub-2" / "MD.nii.gz").unlink()
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "map 'MD' missing for subject sub-2", "dti_MD.nii.gz")


def test_truncated_gzip(cohort, paths_for, capsys):
    path = cohort / "sub-1" / "FA.nii.gz"
    path.write_bytes(path.read_bytes()[:150])
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "cannot read NIfTI: truncated gzip", path)


def test_corrupt_gzip_stream(cohort, paths_for, capsys):
    path = cohort / "sub-1" / "FA.nii.gz"
    data = bytearray(path.read_bytes())
    data[40:80] = bytes(40)  # inside the deflate stream: a CRC/stream error
    path.write_bytes(bytes(data))
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, path)


def test_not_a_nifti(cohort, paths_for, capsys):
    path = cohort / "sub-0" / "T1w.nii.gz"
    path.write_bytes(gzip.compress(b"this is a text file, not an image\n" * 20))
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, path, "NIfTI")


def test_plain_text_named_nii(cohort, paths_for, capsys):
    (cohort / "sub-0" / "T1w.nii.gz").unlink()
    path = cohort / "sub-0" / "T1w.nii"
    path.write_text("not an image\n" * 50)
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, path, "NIfTI")


def test_4d_where_3d_expected(cohort, write_subject, paths_for, capsys):
    from mrinet.io.nifti import save_nifti

    path = cohort / "sub-3" / "MD.nii.gz"
    save_nifti(path, np.ones((*SHAPE, 3), np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]))
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "expected a 3D image", path, "split 4D series")


def test_map_shape_mismatch(cohort, paths_for, capsys):
    from mrinet.io.nifti import save_nifti

    path = cohort / "sub-1" / "RD.nii.gz"
    save_nifti(path, np.ones((7, 5, 4), np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]))
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "shape (7, 5, 4) differs", path, "resample")


def test_label_affine_mismatch(cohort, paths_for, capsys):
    from mrinet.io.nifti import save_nifti

    _, labels = subject_maps(1)
    path = cohort / "sub-1" / "aparc+aseg.nii.gz"
    save_nifti(path, labels.astype(np.int32), np.diag([-1.0, 1.0, 1.0, 1.0]))
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "affine differs", path)


def test_fractional_labels(cohort, paths_for, capsys):
    from mrinet.io.nifti import save_nifti

    _, labels = subject_maps(2)
    path = cohort / "sub-2" / "aparc+aseg.nii.gz"
    save_nifti(path, labels + 0.5, np.diag([-2.0, 2.0, 2.0, 1.0]), dtype=np.float32)
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, "non-integer", path, "nearest neighbour")


@pytest.mark.parametrize(
    ("name", "scale", "message"),
    [("FA", 1000.0, "FA outside [0, 1]"), ("MD", 1e4, "implausible diffusivity scale")],
)
def test_implausible_map_values(cohort, paths_for, capsys, name, scale, message):
    from mrinet.io.nifti import save_nifti

    maps, _ = subject_maps(0)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    for other in ("MD", "AD", "RD") if name == "MD" else (name,):
        save_nifti(cohort / "sub-0" / f"{other}.nii.gz", maps[other] * scale, affine, np.float32)
    err = nifti_run(cohort, paths_for, capsys)
    assert_clear(err, message, "sub-0")


def test_label_map_leaves_a_class_without_voxels(cohort, paths_for, capsys):
    err = nifti_run(cohort, paths_for, capsys, "data.label_map.thalamus=[99]")
    assert_clear(err, "['thalamus'] have no voxel in the train split", "data.label_map")


def test_unknown_class_name(cohort, paths_for, capsys):
    err = nifti_run(cohort, paths_for, capsys, "data.classes=[thalamus,putamen]")
    assert_clear(err, "class 'putamen' has no entry in the label map", "data.label_map")


def test_bvals_length_mismatch_with_dwi(tmp_path, paths_for, capsys):
    from mrinet.io.dwi import write_bvals_bvecs
    from mrinet.io.nifti import save_nifti

    subject = tmp_path / "dwi" / "sub-0"
    subject.mkdir(parents=True)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    save_nifti(subject / "data.nii.gz", np.ones((*SHAPE, 7), np.float32), affine)
    bvecs = np.eye(3)[np.arange(6) % 3]
    write_bvals_bvecs(subject / "bvals", subject / "bvecs", [0] + [1000] * 5, bvecs)
    overrides = [
        "experiment=dti_mlp",
        "data.source=dwi",
        f"data.subjects_dir={tmp_path / 'dwi'}",
        *QUIET,
        *paths_for(),
    ]
    err = guarded_run("train", overrides, capsys)
    assert_clear(err, "has 7 volumes but bvals lists 6", subject)
