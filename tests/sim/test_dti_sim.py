"""DWI simulator: presets reproduce their class means, physics recovers the true tensors."""

import numpy as np
import pytest

from mrinet.mri.dti import fit_tensor, select_volumes
from mrinet.sim.dti import load_preset, make_scheme, simulate

CLASSES = {"thalamus": (10, 49), "cc": (251, 252, 253, 254, 255), "wm": (2, 41)}
FAST = {"single_shell": {"n_b0": 3, "n_dirs": 30, "bval": 1000.0}}  # fewer volumes, same physics
SMALL = {"grid": {"shape": [40, 48, 38], "voxel_mm": 3.6}}


def _class_means(sim) -> dict[str, np.ndarray]:
    keep = select_volumes(sim["bvals"])
    fit = fit_tensor(
        sim["dwi"][..., keep], sim["bvals"][keep], sim["bvecs"][keep], mask=sim["mask"]
    )
    feats = np.stack([sim["t1w"], *(getattr(fit, k).numpy() for k in ("fa", "md", "ad", "rd"))], -1)
    return {name: feats[np.isin(sim["labels"], codes)].mean(0) for name, codes in CLASSES.items()}


def _cylinder_features(ad: float, rd: float) -> np.ndarray:
    """FA, MD, AD, RD of a tensor with eigenvalues (ad, rd, rd)."""
    ev = np.array([ad, rd, rd])
    fa = np.sqrt(0.5 * 2 * (ad - rd) ** 2 / (ev**2).sum())
    return np.array([fa, ev.mean(), ad, rd])


def test_lecture_preset_reproduces_the_lecture_rows():
    rows = {  # T1w, FA, MD, AD, RD from the lecture's example table
        "thalamus": [898, 0.22, 1.07, 1.33, 0.94],
        "cc": [1007, 0.68, 0.39, 0.72, 0.22],
        "wm": [867, 0.38, 0.58, 0.82, 0.45],
    }
    assert load_preset("lecture")["expected_class_means"] == rows
    means = _class_means(simulate("lecture", np.random.default_rng(0), **FAST))
    for name, row in rows.items():
        np.testing.assert_allclose(means[name], row, rtol=0.10, err_msg=name)


@pytest.mark.parametrize("seed", [1, 2])
def test_literature_preset_class_means_within_10_percent_of_its_values(seed):
    expected = load_preset("literature")["expected_class_means"]
    means = _class_means(simulate("literature", np.random.default_rng(seed), **FAST))
    for name in CLASSES:
        np.testing.assert_allclose(means[name], expected[name], rtol=0.10, err_msg=name)


def test_literature_pure_tissue_values_are_the_presets():
    """Without partial volume and noise, class means are the preset's tissue values."""
    preset = load_preset("literature")
    sim = simulate(
        "literature",
        np.random.default_rng(6),
        snr=float("inf"),
        partial_volume_sigma_vox=0.0,
        **SMALL,
        **FAST,
    )
    means = _class_means(sim)
    for name in CLASSES:
        tissue = preset["tissues"][name]
        expected = [tissue["t1w"][0], *_cylinder_features(tissue["ad"][0], tissue["rd"][0])]
        np.testing.assert_allclose(means[name], expected, rtol=0.10, err_msg=name)


def test_noise_free_pure_voxels_recover_the_true_tensors():
    sim = simulate(
        "literature",
        np.random.default_rng(2),
        snr=float("inf"),
        partial_volume_sigma_vox=0.0,
        dwi_dtype="float32",
        **SMALL,
        **FAST,
    )
    fit = fit_tensor(sim["dwi"], sim["bvals"], sim["bvecs"], mask=sim["mask"])
    pure = (sim["true_ad"] > 0) & (sim["labels"] != 0)
    assert pure.sum() > 1000
    np.testing.assert_allclose(fit.ad.numpy()[pure], sim["true_ad"][pure], rtol=1e-4)
    np.testing.assert_allclose(fit.rd.numpy()[pure], sim["true_rd"][pure], rtol=1e-4)


def test_cc_fibres_run_left_right():
    sim = simulate("literature", np.random.default_rng(3), snr=float("inf"), **SMALL, **FAST)
    fit = fit_tensor(sim["dwi"], sim["bvals"], sim["bvecs"], mask=sim["mask"])
    cc = np.isin(sim["labels"], CLASSES["cc"])
    principal_x = np.abs(fit.evecs[..., 0, 0].numpy()[cc])
    assert np.median(principal_x) > 0.95


def test_partial_volume_scale_lowers_cc_anisotropy():
    fa = []
    for sigma in (0.0, 1.2):
        sim = simulate(
            "literature", np.random.default_rng(4), partial_volume_sigma_vox=sigma, **SMALL, **FAST
        )
        fa.append(_class_means(sim)["cc"][1])
    assert fa[1] < fa[0] - 0.05


def test_hcp_scheme_has_b0_stored_as_5_and_jittered_shells():
    params = load_preset("literature") | {"scheme": "hcp"}
    bvals, bvecs = make_scheme(params, np.random.default_rng(5))
    assert bvals.size == 18 + 3 * 90 and bvecs.shape == (288, 3)
    assert np.sum(bvals == 5.0) == 18
    for shell in (1000, 2000, 3000):
        near = np.abs(bvals - shell) <= 15
        assert near.sum() == 90 and np.unique(bvals[near]).size > 1
    np.testing.assert_allclose(np.linalg.norm(bvecs, axis=1), 1.0, atol=1e-12)


def test_unknown_preset_and_scheme_raise():
    with pytest.raises(ValueError, match="preset"):
        load_preset("nope")
    with pytest.raises(ValueError, match="scheme"):
        make_scheme(load_preset("lecture") | {"scheme": "dsi"}, np.random.default_rng(0))


def test_off_midline_callosal_fibres_look_like_the_labelled_callosum():
    """What a voxel-only model cannot separate: labelled CC vs the callosal WM either side."""
    sim = simulate("literature", np.random.default_rng(3), **FAST)
    keep = select_volumes(sim["bvals"])
    fit = fit_tensor(
        sim["dwi"][..., keep], sim["bvals"][keep], sim["bvecs"][keep], mask=sim["mask"]
    )
    fa = fit.fa.numpy()
    cc_codes = CLASSES["cc"]
    labelled = np.isin(sim["labels"], cc_codes)
    callosal_wm = np.isin(sim["tissue"], cc_codes) & np.isin(sim["labels"], CLASSES["wm"])
    other_wm = np.isin(sim["labels"], CLASSES["wm"]) & ~callosal_wm
    assert callosal_wm.sum() > labelled.sum()
    assert abs(fa[callosal_wm].mean() - fa[labelled].mean()) < 0.08
    assert fa[callosal_wm].mean() > fa[other_wm].mean() + 0.15
