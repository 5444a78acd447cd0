"""ESPIRiT maps agree with sigpy's EspiritCalib and with the true maps; the calibration guard."""

import numpy as np
import pytest
import torch

from mrinet.errors import ConfigError
from mrinet.mri import fft2c
from mrinet.mri.coils import espirit_maps
from mrinet.mri.masks import RandomMask

sigpy_mri = pytest.importorskip("sigpy.mri")


def _phantom_kspace(n=96, coils=8):
    import sigpy

    image = torch.from_numpy(sigpy.shepp_logan((n, n))).to(torch.complex64)
    maps = torch.from_numpy(sigpy_mri.birdcage_maps((coils, n, n))).to(torch.complex64)
    return fft2c(maps * image)[None], image, maps


def _coil_correlation(a, b):
    """|<a(r), b(r)>| over coils per pixel: 1 when the maps agree up to a common phase."""
    return (a.conj() * b).sum(0).abs()


@pytest.fixture(scope="module")
def sigpy_maps():
    kspace, _, _ = _phantom_kspace()
    app = sigpy_mri.app.EspiritCalib(kspace[0].numpy(), calib_width=24, show_pbar=False)
    return torch.from_numpy(app.run())


@pytest.mark.slow  # sigpy EspiritCalib JIT-compiles with numba: ~10-25 s on 2 cores
@pytest.mark.parametrize("subsample", [1, 4])
def test_espirit_matches_sigpy_inside_object(subsample, sigpy_maps):
    kspace, image, _ = _phantom_kspace()
    ours = espirit_maps(kspace, calib_width=24, subsample=subsample)[0]
    theirs = sigpy_maps
    inside = image.abs() > 0
    corr = _coil_correlation(ours, theirs)[inside]
    assert corr.mean() > 0.999 and corr.min() > 0.95
    support_ours, support_theirs = ours.abs().sum(0) > 0, theirs.abs().sum(0) > 0
    assert (support_ours != support_theirs).float().mean() < 0.02


def test_espirit_recovers_true_maps_and_unit_norm():
    kspace, image, maps = _phantom_kspace()
    ours = espirit_maps(kspace)[0]
    inside = image.abs() > 0
    true = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    assert _coil_correlation(ours, true)[inside].mean() > 0.999
    norms = ours.abs().pow(2).sum(0).sqrt()[inside]
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


def test_espirit_is_batched_per_slice():
    kspace, _, _ = _phantom_kspace(n=64, coils=4)
    pair = torch.cat([kspace, 2 * kspace.roll(5, dims=-1)])
    both = espirit_maps(pair, calib_width=16)
    assert torch.allclose(both[0], espirit_maps(kspace, calib_width=16)[0], atol=1e-4)


def test_calibration_wider_than_sampled_centre_raises_config_error():
    kspace, _, _ = _phantom_kspace(n=96)
    mask = RandomMask([0.08], [4])(kspace.shape, seed=0)  # centre round(96 * 0.08) = 8 lines
    with pytest.raises(ConfigError, match=r"calibration width 24 .* \(8 of 96") as err:
        espirit_maps(kspace * mask, calib_width=24, mask=mask)
    assert "calib_width <= 8" in str(err.value)
    with pytest.raises(ConfigError, match="wider than the fully sampled"):  # inferred from zeros
        espirit_maps(kspace * mask, calib_width=24)


def test_undersampled_kspace_with_enough_centre_gives_finite_nonzero_maps():
    kspace, image, _ = _phantom_kspace(n=96)
    mask = RandomMask([0.25], [4])(kspace.shape, seed=0)
    maps = espirit_maps(kspace * mask, calib_width=24, mask=mask)
    assert torch.isfinite(torch.view_as_real(maps)).all()
    assert (maps[0].abs().sum(0) > 0)[image.abs() > 0].float().mean() > 0.95
    assert np.isclose(float(maps.abs().pow(2).sum(1).amax()), 1.0, atol=1e-4)
