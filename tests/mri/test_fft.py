"""fft2c / ifft2c / rss / center_crop equal fastMRI's real-view functions (the oracle)."""

import pytest
import torch

from mrinet.mri import center_crop, center_pad, fft2c, ifft2c, rss

fastmri = pytest.importorskip("fastmri")


def _complex(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (1, 2, 15, 9), (4, 7)])
def test_fft2c_matches_fastmri(shape):
    x = _complex(shape)
    ours = fft2c(x)
    theirs = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)).contiguous())
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (1, 2, 15, 9)])
def test_ifft2c_matches_fastmri_and_inverts_fft2c(shape):
    x = _complex(shape, seed=1)
    ours = ifft2c(x)
    theirs = torch.view_as_complex(fastmri.ifft2c(torch.view_as_real(x)).contiguous())
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)


def test_fft2c_is_orthonormal():
    x = _complex((3, 32, 24), seed=2)
    assert torch.allclose(fft2c(x).abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-5)


def test_rss_matches_fastmri_complex_abs_rss():
    x = _complex((2, 5, 8, 6), seed=3)
    theirs = fastmri.rss(fastmri.complex_abs(torch.view_as_real(x)), dim=1)
    assert torch.allclose(rss(x, dim=1), theirs, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "crop"), [((9, 10), (4, 5)), ((640, 368), (320, 320)), ((7, 7), (7, 2))]
)
def test_center_crop_matches_fastmri_including_odd_sizes(size, crop):
    x = _complex((2, *size), seed=4)
    transforms = pytest.importorskip("fastmri.data.transforms")
    theirs = torch.view_as_complex(
        transforms.complex_center_crop(torch.view_as_real(x), crop).contiguous()
    )
    assert torch.equal(center_crop(x, crop), theirs)


def test_center_pad_is_adjoint_of_center_crop():
    x, y = _complex((9, 10), seed=5), _complex((4, 5), seed=6)
    lhs = torch.vdot(center_crop(x, (4, 5)).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), center_pad(y, (9, 10)).flatten())
    assert torch.allclose(lhs, rhs, atol=1e-5)


def test_center_crop_too_large_raises():
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(torch.zeros(4, 4), (5, 4))
