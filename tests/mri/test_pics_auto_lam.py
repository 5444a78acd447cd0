"""lam="auto": k-space cross-validation lands near the grid optimum, scales, and falls back."""

import functools
import math
import warnings

import pytest
import torch

from mrinet.errors import DataFormatError, MrinetError
from mrinet.mri import fft2c, ifft2c, pics_reconstruct
from mrinet.mri.lam import HOLDOUT_FRACTION, holdout_split, lam_grid, refine_minimum
from mrinet.mri.masks import RandomMask
from mrinet.mri.pics import auto_lam

ITERATIONS = 20


@pytest.fixture(autouse=True)
def one_thread():
    """Small solves: with 2 threads on a busy 2-core machine each one runs ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=2)
def _t1_problem(n=64, coils=4, noise=0.01):
    """DIPY's real T1 slice (not the project's phantom), birdcage coils, R=4 random lines."""
    dipy_data = pytest.importorskip("dipy.data")
    import numpy as np

    from mrinet.sim.kspace import coil_sensitivities

    t1 = np.load(dipy_data.get_fnames(name="t1_coronal_slice")).astype(np.float32)
    image = torch.nn.functional.interpolate(
        torch.from_numpy(t1)[None, None], size=(n, n), mode="bilinear", align_corners=False
    )[0, 0]
    image = (image / image.max()).to(torch.complex64)
    maps = torch.from_numpy(coil_sensitivities(coils, (n, n), np.random.default_rng(0)))
    maps = maps.to(torch.complex64)
    clean = fft2c(maps * image)[None]
    g = torch.Generator().manual_seed(0)
    kspace = clean + noise * torch.complex(
        torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g)
    )
    mask = RandomMask([0.08], [4])(kspace.shape, seed=3)
    # true maps (the image is the answer); the fully sampled noisy k-space last
    return kspace * mask, mask, maps[None], image[None], kspace


def _psnr(x, ref):
    x, ref = x.abs(), ref.abs()
    return float(10 * torch.log10(ref.max() ** 2 / ((x - ref) ** 2).mean()))


def test_auto_lam_is_within_half_a_db_of_the_grid_optimum_on_a_real_t1_slice():
    kspace, mask, maps, reference, _ = _t1_problem()
    grid = [5e-4 * 2 ** (k / 2) for k in range(19)]  # 5e-4 ... 0.256, factor sqrt(2)
    best = max(
        _psnr(pics_reconstruct(kspace, mask, maps, lam=lam, iterations=ITERATIONS)[0], reference[0])
        for lam in grid
    )
    auto = _psnr(pics_reconstruct(kspace, mask, maps, iterations=ITERATIONS)[0], reference[0])
    assert auto > best - 0.5, (auto, best)


@pytest.mark.parametrize("factor", [1e-6, 1e4])
@pytest.mark.parametrize("lam", ["auto", 0.02])
def test_scaling_the_kspace_scales_the_reconstruction_by_the_same_factor(factor, lam):
    kspace, mask, maps, _, _ = _t1_problem()
    one = pics_reconstruct(kspace, mask, maps, lam=lam, iterations=10)
    scaled = pics_reconstruct(kspace * factor, mask, maps, lam=lam, iterations=10) / factor
    assert float((scaled - one).abs().max() / one.abs().max()) < 1e-4
    if lam == "auto":  # the same lam was chosen
        chosen = auto_lam(kspace, mask, maps, iterations=10).lam
        assert auto_lam(kspace * factor, mask, maps, iterations=10).lam == pytest.approx(
            chosen, rel=1e-3
        )


def test_holdout_takes_the_fraction_of_the_outer_samples_and_none_of_the_centre():
    mask = torch.zeros(64)
    mask[28:36] = 1  # calibration block
    mask[0:28:2] = 1  # 14 outer lines on each side
    mask[37::2] = 1
    train, held = holdout_split(mask, rows=100)
    assert not bool(held[:, 28:36].any()) and not bool((train & held).any())
    assert bool((train | held).eq(mask[None] > 0).all())
    assert int(held.sum()) / (100 * 28) == pytest.approx(HOLDOUT_FRACTION, abs=0.03)
    assert holdout_split(torch.ones(64), rows=8) is None  # R = 1: nothing outside the centre


def test_refine_minimum_finds_the_vertex_of_a_parabola_in_log_lam():
    lams = lam_grid()
    scores = [(math.log(lam) - math.log(0.01)) ** 2 for lam in lams]
    assert refine_minimum(lams, scores) == pytest.approx(0.01, rel=1e-6)


def test_fully_sampled_mask_falls_back_to_the_universal_threshold_with_a_warning():
    _, _, maps, _, kspace = _t1_problem()
    full = torch.ones(1, 64)
    with pytest.warns(UserWarning, match=r"vol7\.h5, slice\(s\) \[0\].*fallback rule"):
        choice = auto_lam(kspace, full, maps, source="vol7.h5")
    assert choice.rule.startswith("fallback: universal threshold")
    # sigma * sqrt(2 ln N) on the scaled data: noise 0.01 per sample, scale = 1 / (99th
    # percentile of |A^H y|); the corner estimate may read a little signal (+-30 %)
    scale = 1 / float(torch.quantile((maps.conj() * ifft2c(kspace)).sum(1).abs().flatten(), 0.99))
    expected = 0.01 * scale * math.sqrt(2 * math.log(64 * 64))
    assert choice.lam == pytest.approx(expected, rel=0.3)
    with pytest.warns(UserWarning):
        x = pics_reconstruct(kspace, full, maps, iterations=10, source="vol7.h5")
    assert bool(torch.isfinite(x).all())


def test_too_few_outer_lines_fall_back_with_a_warning_naming_file_and_slice():
    kspace, _, maps, _, _ = _t1_problem()
    mask = torch.zeros(1, 64)
    mask[0, 26:38] = 1
    mask[0, 5] = 1  # one line outside the calibration block: nothing to hold out
    with pytest.warns(UserWarning, match=r"scan\.h5, slice\(s\) \[0\].*fewer than 2 sampled"):
        x = pics_reconstruct(kspace * mask, mask, maps, iterations=10, source="scan.h5")
    assert bool(torch.isfinite(x).all()) and float(x.abs().max()) > 0


def test_an_all_zero_slice_reconstructs_to_zero_and_does_not_decide_lam():
    kspace, mask, maps, _, _ = _t1_problem()
    volume = torch.cat([torch.zeros_like(kspace), kspace])
    coil_maps = torch.cat([maps, maps])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the signal slice decides: no fallback, no warning
        choice = auto_lam(volume, mask, coil_maps)
        x = pics_reconstruct(volume, mask, coil_maps, iterations=10)
    assert choice.slices == [1] and choice.rule == "cross-validation"
    assert float(x[0].abs().max()) == 0.0 and bool(torch.isfinite(x).all())
    with pytest.warns(UserWarning, match="no slice holds any signal"):
        zero = pics_reconstruct(torch.zeros_like(kspace), mask, maps, iterations=10, source="z.h5")
    assert float(zero.abs().max()) == 0.0


def test_non_finite_kspace_is_an_error_naming_slice_and_coil():
    kspace, mask, maps, _, _ = _t1_problem()
    bad = torch.cat([kspace, kspace]).clone()
    bad[1, 3, 10, 20] = float("nan")
    with pytest.raises(DataFormatError, match=r"slice 1, coil 3") as info:
        pics_reconstruct(bad, mask, torch.cat([maps, maps]), lam=0.01, source="bad.h5")
    assert isinstance(info.value, MrinetError) and "bad.h5" in str(info.value)
