"""SENSE operators pass dot-product adjoint tests; CG-SENSE and PI-CS against oracles."""

import functools

import numpy as np
import pytest
import torch

from mrinet.mri import fft2c, ifft2c, pics_reconstruct, sense_reconstruct, zero_filled
from mrinet.mri.coils import espirit_maps
from mrinet.mri.masks import PoissonDiscMask, RandomMask
from mrinet.mri.pics import data_scale
from mrinet.mri.sense import SenseOperator, sense_adjoint, sense_forward
from mrinet.mri.solvers import conjugate_gradient


def _rand(shape, seed, dtype=torch.complex128):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).to(dtype)


@pytest.mark.parametrize("mask_kind", ["lines", "2d", "full"])
@pytest.mark.parametrize("size", [(16, 12), (15, 9)])
def test_sense_operators_pass_dot_product_test(mask_kind, size):
    h, w = size
    maps = _rand((2, 4, h, w), 0)
    mask = {
        "lines": (torch.rand(1, w, generator=torch.Generator().manual_seed(1)) < 0.5).double(),
        "2d": (torch.rand(h, w, generator=torch.Generator().manual_seed(1)) < 0.5).double(),
        "full": torch.ones(1, w, dtype=torch.float64),
    }[mask_kind]
    x, y = _rand((2, h, w), 2), _rand((2, 4, h, w), 3)
    lhs = torch.vdot(sense_forward(x, maps, mask).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), sense_adjoint(y, maps, mask).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    op = SenseOperator(maps, mask)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-10)
    # the unshifted frame is the centred model up to a fixed change of k-space coordinates
    assert torch.allclose(op.from_centered(sense_forward(x, maps, mask)), op.forward(x), atol=1e-10)
    assert torch.allclose(op.to_centered(op.forward(x)), sense_forward(x, maps, mask), atol=1e-10)


def test_conjugate_gradient_solves_batched_spd_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    spd = a @ a.transpose(1, 2) + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: (spd @ v[..., None])[..., 0], b, iterations=12)
    assert torch.allclose(x, torch.linalg.solve(spd, b), atol=1e-8)


@functools.lru_cache(maxsize=4)
def _phantom_problem(n=80, coils=8, acceleration=4, seed=0):
    sp = pytest.importorskip("sigpy")
    mr = pytest.importorskip("sigpy.mri")
    image = torch.from_numpy(sp.shepp_logan((n, n))).to(torch.complex64)
    maps = torch.from_numpy(mr.birdcage_maps((coils, n, n))).to(torch.complex64)
    kspace = fft2c(maps * image)
    g = torch.Generator().manual_seed(seed)
    kspace = kspace + 0.002 * torch.complex(
        torch.randn(kspace.shape, generator=g), torch.randn(kspace.shape, generator=g)
    )
    kspace = kspace[None]
    est = espirit_maps(kspace, calib_width=20)
    mask = RandomMask([0.1], [acceleration])(kspace.shape, seed=seed)
    reference = (est.conj() * ifft2c(kspace)).sum(1)
    return kspace * mask, mask, est, reference


def _psnr(x, ref):
    x, ref = x.abs(), ref.abs()
    return float(10 * torch.log10(ref.max() ** 2 / ((x - ref) ** 2).mean()))


def test_fully_sampled_cg_sense_equals_coil_combination():
    kspace, _, maps, reference = _phantom_problem()
    full = torch.ones(1, kspace.shape[-1])
    kfull = fft2c(maps * reference[:, None])  # consistent with the maps: exact solution exists
    x = sense_reconstruct(kfull, full, maps, iterations=5)
    assert torch.allclose(x, reference, atol=1e-4)


@pytest.mark.parametrize("wavelet", ["haar", "db4"])
def test_pics_psnr_within_half_db_of_sigpy_l1wavelet(wavelet):
    mr = pytest.importorskip("sigpy.mri")
    kspace, mask, maps, reference = _phantom_problem(n=96)
    ours = pics_reconstruct(kspace, mask, maps, lam=0.01, iterations=30, wavelet=wavelet)
    scale = float(data_scale(zero_filled(kspace, mask, maps))[0])
    app = mr.app.L1WaveletRecon(
        kspace[0].numpy(),
        maps[0].numpy(),
        0.01 / scale,
        weights=mask.numpy(),
        max_iter=30,
        wave_name=wavelet,
        alpha=1.0,
        show_pbar=False,
    )
    theirs = torch.from_numpy(app.run())
    p_ours, p_theirs = _psnr(ours[0], reference[0]), _psnr(theirs, reference[0])
    assert abs(p_ours - p_theirs) < 0.5, (p_ours, p_theirs)
    assert p_ours > _psnr(zero_filled(kspace, mask, maps)[0], reference[0]) + 3


@pytest.mark.slow  # three full solves; the TV prox is iterative
def test_pics_beats_cg_sense_and_tv_prior_works():
    kspace, mask, maps, reference = _phantom_problem()
    p_sense = _psnr(sense_reconstruct(kspace, mask, maps, iterations=8)[0], reference[0])
    p_wav = _psnr(pics_reconstruct(kspace, mask, maps, iterations=30)[0], reference[0])
    p_tv = _psnr(pics_reconstruct(kspace, mask, maps, iterations=30, prior="tv")[0], reference[0])
    assert p_wav > p_sense + 1 and p_tv > p_sense + 1


def test_pics_is_invariant_to_data_scale_and_batched_like_single_slices():
    kspace, mask, maps, _ = _phantom_problem(n=48)
    one = pics_reconstruct(kspace, mask, maps, iterations=10)
    scaled = pics_reconstruct(1000 * kspace, mask, maps, iterations=10) / 1000
    assert torch.allclose(one, scaled, atol=1e-4 * float(one.abs().max()))
    two = pics_reconstruct(
        torch.cat([kspace, kspace]), mask, torch.cat([maps, maps]), iterations=10, chunk_size=2
    )
    assert torch.allclose(two[1], one[0], atol=1e-4 * float(one.abs().max()))


def test_pics_with_2d_poisson_mask_improves_on_zero_filled():
    _, _, maps, reference = _phantom_problem(n=48)
    mask = PoissonDiscMask(4, 0.15)((48, 48), seed=0)
    # fully sampled k-space of the same object: rebuild from the reference and maps
    full = fft2c(maps * reference[:, None])
    x = pics_reconstruct(full * mask, mask, maps, iterations=30)
    assert (
        _psnr(x[0], reference[0]) > _psnr(zero_filled(full * mask, mask, maps)[0], reference[0]) + 3
    )
    assert np.isfinite(_psnr(x[0], reference[0]))
