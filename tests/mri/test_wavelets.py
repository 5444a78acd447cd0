"""Periodized DWT: unitary, invertible, equal to PyWavelets' periodization mode."""

import numpy as np
import pytest
import torch

from mrinet.mri.wavelets import Wavelet2d, soft_threshold, wavelet_filters

pywt = pytest.importorskip("pywt")


def _image(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


@pytest.mark.parametrize("name", ["haar", "db2", "db4"])
def test_filters_match_pywavelets(name):
    lo, hi = wavelet_filters(name)
    w = pywt.Wavelet(name)
    assert np.allclose(lo.numpy(), w.rec_lo, atol=1e-12)
    assert np.allclose(hi.numpy(), w.rec_hi, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "shape"), [("db4", (64, 48)), ("haar", (32, 32)), ("db2", (30, 44))]
)
def test_transform_is_unitary_and_invertible(name, shape):
    wav = Wavelet2d(shape, name)
    x = _image((2, *shape)).to(torch.complex128)
    coeffs = wav.forward(x)
    energy = sum(c.abs().pow(2).sum() for c in coeffs)
    if wav.padded == shape:
        assert torch.allclose(energy, x.abs().pow(2).sum(), rtol=1e-10)
    assert torch.allclose(wav.inverse(coeffs), x, atol=1e-10)


def test_inverse_is_adjoint():
    wav = Wavelet2d((64, 64), "db4")
    x = _image((1, 64, 64), 1).to(torch.complex128)
    c = [_image(t.shape, 2 + i).to(torch.complex128) for i, t in enumerate(wav.forward(x))]
    lhs = sum(torch.vdot(a.flatten(), b.flatten()) for a, b in zip(wav.forward(x), c))
    rhs = torch.vdot(x.flatten(), wav.inverse(c).flatten())
    assert torch.allclose(lhs, rhs, atol=1e-9)


@pytest.mark.parametrize("name", ["haar", "db2", "db4"])
def test_coefficients_equal_pywavelets_periodization(name):
    x = _image((1, 64, 64), 3).to(torch.complex128)
    ours = Wavelet2d((64, 64), name, levels=3).forward(x)
    theirs = pywt.wavedec2(x[0].numpy(), name, mode="periodization", level=3)
    assert np.allclose(ours[-1][0, 0].numpy(), theirs[0], atol=1e-10)
    # ours are ordered (lo-hi, hi-lo, hi-hi) along (rows, columns), PyWavelets' (cH, cV, cD)
    for lev in range(3):
        for band, their_band in enumerate((1, 0, 2)):
            assert np.allclose(ours[lev][0, band].numpy(), theirs[3 - lev][their_band], atol=1e-10)


def test_soft_threshold_shrinks_magnitude_keeps_phase():
    z = torch.tensor([3 + 4j, 0.1 + 0j, 0j])
    out = soft_threshold(z, 1.0)
    assert torch.allclose(out, torch.tensor([2.4 + 3.2j, 0j, 0j]))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("haar", (64, 48)),
        ("haar", (30, 44)),
        ("db2", (32, 32)),
        ("db4", (64, 48)),
        ("db4", (30, 44)),
    ],
)
def test_fused_shrink_equals_inverse_of_soft_thresholded_coefficients(name, shape):
    wav = Wavelet2d(shape, name)
    x = _image((2, *shape), 4)
    threshold = torch.tensor([[0.3], [1.0]])
    expected = torch.cat(
        [
            wav.inverse([soft_threshold(c, t) for c in wav.forward(x[i : i + 1])])
            for i, t in enumerate((0.3, 1.0))
        ]
    )
    got = wav.shrink(x, threshold)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(wav.shrink(x, threshold), got)  # cached buffers: same result again


@pytest.mark.parametrize(
    ("name", "shape"), [("db4", (64, 64)), ("db2", (48, 80)), ("db4", (96, 40))]
)
def test_shrink_equals_pywavelets_soft_thresholding(name, shape):
    """The Fourier-domain shrink against an independent oracle: PyWavelets' periodized
    wavedec2, soft thresholding of every subband (approximation included), waverec2."""
    wav = Wavelet2d(shape, name)
    x = _image((2, *shape), 5).to(torch.complex128)
    thresholds = (0.4, 1.5)
    got = wav.shrink(x, torch.tensor([[t] for t in thresholds], dtype=torch.float64))
    for i, t in enumerate(thresholds):
        coeffs = pywt.wavedec2(x[i].numpy(), name, mode="periodization", level=wav.levels)
        soft = [pywt.threshold(coeffs[0], t, "soft")]
        soft += [tuple(pywt.threshold(c, t, "soft") for c in detail) for detail in coeffs[1:]]
        expected = pywt.waverec2(soft, name, mode="periodization")
        assert np.allclose(got[i].numpy(), expected, atol=1e-10)
    single = wav.shrink(x[:1].to(torch.complex64), 0.4)
    assert torch.allclose(single, got[:1].to(torch.complex64), atol=1e-5)


def test_default_levels_avoid_padding():
    assert Wavelet2d((320, 320), "haar").padded == (320, 320)
    assert Wavelet2d((192, 192), "db4").levels == 4  # pywt.dwt_max_level(192, 8), as sigpy


@pytest.mark.parametrize("shape", [(64, 48), (30, 44)])
def test_haar_shrink_equals_pywavelets_soft_thresholding(shape):
    """The fused Haar shrink against PyWavelets (wavedec2, soft threshold of every subband,
    waverec2), as the Fourier-domain shrink is above; (30, 44) is zero-padded to (32, 48)."""
    wav = Wavelet2d(shape, "haar")
    x = _image((1, *shape), 6).to(torch.complex128)
    got = wav.shrink(x, 0.7)[0].numpy()
    if wav.padded != shape:
        padded = np.zeros(wav.padded, complex)
        padded[: shape[0], : shape[1]] = x[0].numpy()
    else:
        padded = x[0].numpy()
    coeffs = pywt.wavedec2(padded, "haar", mode="periodization", level=wav.levels)
    soft = [pywt.threshold(coeffs[0], 0.7, "soft")]
    soft += [tuple(pywt.threshold(c, 0.7, "soft") for c in detail) for detail in coeffs[1:]]
    expected = pywt.waverec2(soft, "haar", mode="periodization")[: shape[0], : shape[1]]
    assert np.allclose(got, expected, atol=1e-10)
