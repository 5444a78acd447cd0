"""DTI DataModule from NIfTI subject folders (direct map names and FSL dtifit outputs)."""

from __future__ import annotations

import numpy as np
import pytest

from mrinet.data.tissue.voxel_module import DTIDataModule
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError

SHAPE = (6, 5, 4)
LABEL_MAP = {
    "thalamus": [10, 49],
    "corpus_callosum": [251, 252, 253, 254, 255],
    "cortical_wm": [2, 41],
}


def subject_maps(seed: int):
    """Labels with every class and some non-class codes; features that encode the voxel index."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 10, 49, 251, 255, 2, 41, 3], size=SHAPE)
    labels.flat[:3] = [10, 251, 2]
    index = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    maps = {
        "T1w": 800 + index,
        "FA": rng.uniform(0.1, 0.9, SHAPE),
        "MD": rng.uniform(0.5, 1.2, SHAPE),
        "AD": rng.uniform(0.8, 1.8, SHAPE),
        "RD": rng.uniform(0.2, 0.9, SHAPE),
    }
    return maps, labels


def load(subjects_dir, **kwargs) -> DTIDataModule:
    dm = DTIDataModule(
        source="nifti",
        subjects_dir=str(subjects_dir),
        label_map=LABEL_MAP,
        split=[0.5, 0.25, 0.25],
        **kwargs,
    )
    dm.setup("fit")
    return dm


def all_voxels(dm):
    x = np.concatenate([dm.data[s]["x"].numpy() for s in ("train", "val", "test")])
    y = np.concatenate([dm.data[s]["y"].numpy() for s in ("train", "val", "test")])
    order = np.argsort(x[:, 0] + 1e5 * np.round(x[:, 1], 6))
    return x[order], y[order]


def test_reads_class_voxels_with_fixed_class_order(tmp_path, write_subject):
    expected = []
    for s in range(4):
        maps, labels = subject_maps(s)
        write_subject(tmp_path / f"sub-{s}", maps, labels)
        lookup = {10: 0, 49: 0, 251: 1, 255: 1, 2: 2, 41: 2}
        keep = np.isin(labels, list(lookup))
        expected.append(np.vectorize(lookup.get)(labels[keep]))
    dm = load(tmp_path)
    total = sum(len(dm.data[s]["y"]) for s in dm.data)
    assert total == sum(len(e) for e in expected)
    assert np.bincount(np.concatenate(expected)).tolist() == np.bincount(all_voxels(dm)[1]).tolist()


def test_dtifit_names_give_ad_l1_and_rd_mean_of_l2_l3(tmp_path, write_subject):
    for s in range(4):
        maps, labels = subject_maps(s)
        write_subject(tmp_path / "direct" / f"sub-{s}", maps, labels)
        l2 = maps["RD"] * 1.2
        l3 = 2 * maps["RD"] - l2
        fsl = {"T1w": maps["T1w"], "dti_FA": maps["FA"], "dti_MD": maps["MD"], "dti_L1": maps["AD"]}
        write_subject(tmp_path / "fsl" / f"sub-{s}", {**fsl, "dti_L2": l2, "dti_L3": l3}, labels)
    a, b = all_voxels(load(tmp_path / "direct")), all_voxels(load(tmp_path / "fsl"))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])


def test_diffusivities_in_mm2_per_s_are_converted(tmp_path, write_subject):
    for s in range(4):
        maps, labels = subject_maps(s)
        write_subject(tmp_path / "um" / f"sub-{s}", maps, labels)
        mm = {k: v / 1000.0 if k in ("MD", "AD", "RD") else v for k, v in maps.items()}
        write_subject(tmp_path / "mm" / f"sub-{s}", mm, labels)
    a, b = all_voxels(load(tmp_path / "um")), all_voxels(load(tmp_path / "mm"))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)


def test_split_is_by_subject(tmp_path, write_subject):
    for s in range(4):
        maps, labels = subject_maps(s)
        maps["T1w"] = np.full(SHAPE, 1000.0 + s)  # T1w tells the subject apart
        write_subject(tmp_path / f"sub-{s}", maps, labels)
    dm = load(tmp_path)
    owners = {s: set(dm.data[s]["x"][:, 0].tolist()) for s in ("train", "val", "test")}
    assert owners["train"].isdisjoint(owners["val"]) and owners["train"].isdisjoint(owners["test"])
    assert sum(len(o) for o in owners.values()) == 4


def test_missing_map_names_subject_and_fix(tmp_path, write_subject):
    for s in range(4):
        maps, labels = subject_maps(s)
        if s == 2:
            del maps["RD"]
        write_subject(tmp_path / f"sub-{s}", maps, labels)
    with pytest.raises(DataNotFoundError, match="'RD' missing for subject sub-2") as err:
        load(tmp_path)
    assert "dti_L2" in str(err.value)


def test_label_shape_mismatch_is_an_error(tmp_path, write_subject):
    maps, _labels = subject_maps(0)
    write_subject(tmp_path / "sub-0", maps, np.zeros((7, 5, 4)))
    with pytest.raises(DataFormatError, match="nearest neighbour"):
        load(tmp_path)


def test_affine_mismatch_is_an_error(tmp_path, write_subject):
    maps, labels = subject_maps(0)
    folder = write_subject(tmp_path / "sub-0", maps, labels)
    from mrinet.io.nifti import save_nifti

    save_nifti(
        folder / "FA.nii.gz", maps["FA"].astype(np.float32), np.diag([-1.25, 1.25, 1.25, 1.0])
    )
    with pytest.raises(DataFormatError, match="affine"):
        load(tmp_path)


def test_fractional_labels_are_an_error(tmp_path, write_subject):
    from mrinet.io.nifti import save_nifti

    maps, labels = subject_maps(0)
    folder = write_subject(tmp_path / "sub-0", maps, labels)
    save_nifti(
        folder / "aparc+aseg.nii.gz", labels + 0.3, np.diag([-2.0, 2.0, 2.0, 1.0]), dtype=np.float32
    )
    with pytest.raises(DataFormatError, match="non-integer"):
        load(tmp_path)


def test_label_map_leaving_a_class_empty_is_an_error(tmp_path, write_subject):
    for s in range(4):
        maps, labels = subject_maps(s)
        write_subject(tmp_path / f"sub-{s}", maps, labels)
    dm = DTIDataModule(
        source="nifti",
        subjects_dir=str(tmp_path),
        label_map={**LABEL_MAP, "thalamus": [999]},
        split=[0.5, 0.25, 0.25],
    )
    with pytest.raises(DataFormatError, match=r"\['thalamus'\] have no voxel"):
        dm.setup("fit")


def test_unknown_class_and_missing_dir(tmp_path):
    with pytest.raises(ConfigError, match="class 'putamen' has no entry"):
        DTIDataModule(
            source="nifti", subjects_dir=str(tmp_path), classes=["putamen"], label_map=LABEL_MAP
        ).setup()
    with pytest.raises(DataNotFoundError, match="subjects directory not found"):
        load(tmp_path / "absent")
    with pytest.raises(DataNotFoundError, match="no subject folders"):
        load(tmp_path)


def test_corrupt_gzip_is_named(tmp_path, write_subject):
    maps, labels = subject_maps(0)
    folder = write_subject(tmp_path / "sub-0", maps, labels)
    data = (folder / "MD.nii.gz").read_bytes()
    (folder / "MD.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"MD.nii.gz"):
        load(tmp_path)


def test_synthetic_voxels_are_cached_and_equal_to_a_fresh_read(tmp_path, write_subject):
    """The extracted-voxel cache of a simulated cohort returns exactly what reading gives."""
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    settings = {
        "subjects": 3,
        "grid": {"shape": [36, 44, 34], "voxel_mm": 4.0},
        "single_shell": {"n_b0": 2, "n_dirs": 20, "bval": 1000.0},
    }
    kwargs = {
        "source": "synthetic",
        "cache_dir": str(tmp_path),
        "synthetic": settings,
        "label_map": LABEL_MAP,
        "split": [0.34, 0.33, 0.33],
    }
    first = DTIDataModule(**kwargs)
    fresh = first.load_voxels()  # reads the NIfTI maps and writes the cache
    root = ensure_synthetic_cohort(tmp_path, settings)
    (_cache,) = root.glob(".voxels-*.npz")
    cached = DTIDataModule(**kwargs).load_voxels()
    np.testing.assert_array_equal(cached.features, fresh.features)
    np.testing.assert_array_equal(cached.labels, fresh.labels)
    assert list(cached.subjects) == list(fresh.subjects)
    other = DTIDataModule(**{**kwargs, "features": ["FA", "MD"]}).load_voxels()
    assert other.features.shape[1] == 2 and len(list(root.glob(".voxels-*.npz"))) == 2
