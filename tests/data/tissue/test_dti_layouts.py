"""The DTI DataModule reads an HCP release tree (data.layout=hcp) and .mgz labels unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mrinet.errors import DataNotFoundError

TINY = {
    "grid": {"shape": [36, 44, 34], "voxel_mm": 4.0},
    "single_shell": {"n_b0": 2, "n_dirs": 12, "bval": 1000.0},
}
LABEL_MAP = {
    "thalamus": [10, 49],
    "corpus_callosum": [251, 252, 253, 254, 255],
    "cortical_wm": [2, 41],
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    root = tmp_path_factory.mktemp("trees")
    simulate_dti_cohort(root / "flat", subjects=2, seed=5, **TINY)
    simulate_dti_cohort(root / "hcp", subjects=2, seed=5, layout="hcp", **TINY)
    return root


def _module(**kwargs):
    from mrinet.data.tissue.voxel_module import DTIDataModule

    return DTIDataModule(label_map=LABEL_MAP, split=[0.5, 0.5, 0.0], seed=0, **kwargs)


def test_layout_hcp_reads_the_same_voxels_as_the_flat_folders(trees):
    flat = _module(source="dwi", subjects_dir=str(trees / "flat"))
    hcp = _module(source="nifti", subjects_dir=str(trees / "hcp"), layout="hcp")
    flat.setup()
    hcp.setup()
    for split in ("train", "val"):
        np.testing.assert_array_equal(hcp.data[split]["y"], flat.data[split]["y"])
        np.testing.assert_allclose(hcp.data[split]["x"], flat.data[split]["x"], atol=1e-5)


def test_layout_hcp_with_context_builds_coords_from_the_diffusion_brain_mask(trees):
    hcp = _module(source="dwi", subjects_dir=str(trees / "hcp"), layout="hcp", context="coords")
    hcp.setup()
    assert hcp.feature_names[-3:] == ["coord_R", "coord_A", "coord_S"]
    assert hcp.data["train"]["x"].shape[1] == 8


def test_layout_hcp_missing_its_t1w_names_the_file(trees, tmp_path):
    import shutil

    shutil.copytree(trees / "hcp", tmp_path / "hcp")
    (tmp_path / "hcp" / "sub-001" / "T1w" / "T1w_acpc_dc_restore_1.25.nii.gz").unlink()
    with pytest.raises(DataNotFoundError, match=r"T1w_acpc_dc_restore_1\.25\.nii\.gz"):
        _module(source="dwi", subjects_dir=str(tmp_path / "hcp"), layout="hcp").setup()


def test_mgz_labels_load_where_the_nifti_did(trees, tmp_path):
    import shutil

    from mrinet.io.nifti import load_nifti, save_nifti

    shutil.copytree(trees / "flat", tmp_path / "flat")
    for subject in (tmp_path / "flat").glob("sub-*"):
        labels, affine = load_nifti(subject / "aparc+aseg.nii.gz", 3, np.int32)
        save_nifti(subject / "aparc+aseg.mgz", labels, affine)
        (subject / "aparc+aseg.nii.gz").unlink()
    mgz = _module(source="nifti", subjects_dir=str(tmp_path / "flat"), label_file="aparc+aseg.mgz")
    flat = _module(source="nifti", subjects_dir=str(trees / "flat"))
    mgz.setup()
    flat.setup()
    np.testing.assert_array_equal(mgz.data["train"]["y"], flat.data["train"]["y"])


def test_unknown_layout_and_context_on_a_table_name_the_key():
    from mrinet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.layout"):
        _module(layout="bids")
    with pytest.raises(ConfigError, match="needs whole volumes"):
        _module(source="table", table_path="x.csv", context=["coords"])
