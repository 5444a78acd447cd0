"""Coil compression of A^H A (row-wise for 1-D masks, per slice for 2-D): bounded error, Hermitian,
PI-CS unchanged."""

import functools

import pytest
import torch

from mrinet.mri import fft2c, pics_reconstruct, sense_reconstruct
from mrinet.mri.masks import PoissonDiscMask, RandomMask
from mrinet.mri.pics import _as_batch_mask
from mrinet.mri.sense import SenseOperator


def _rand(shape, seed, dtype=torch.complex128):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).to(dtype)


@functools.lru_cache(maxsize=2)
def _birdcage_problem(n=64, coils=8, dtype=torch.complex128):
    """Smooth birdcage maps (B=1, C, n, n), cropped to an ellipse like ESPIRiT maps, a 1-D mask."""
    mr = pytest.importorskip("sigpy.mri")
    maps = torch.from_numpy(mr.birdcage_maps((coils, n, n))).to(dtype)[None]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    maps = maps * ((yy / 0.9) ** 2 + (xx / 0.75) ** 2 <= 1)
    mask = _as_batch_mask(RandomMask([0.1], [4])((1, coils, n, n), seed=0), maps)
    return maps, mask


@pytest.mark.parametrize("tolerance", [1e-6, 1e-4, 1e-2])
def test_compressed_normal_error_is_bounded_by_tolerance_times_lipschitz(tolerance):
    maps, mask = _birdcage_problem()
    exact = SenseOperator(maps, mask, coil_tolerance=0)
    compressed = SenseOperator(maps, mask, coil_tolerance=tolerance)
    kept = [virtual.shape[1] for _, virtual, _ in compressed._blocks]
    assert max(kept) < maps.shape[1]  # it does compress smooth maps
    bound = tolerance * float(exact.lipschitz()[0])
    for seed in range(3):
        x = _rand((1, *maps.shape[-2:]), seed)
        err = (compressed.normal(x) - exact.adjoint(exact.forward(x))).norm()
        assert float(err) <= bound * float(x.norm())
    # the bound is not vacuous: the error grows with the tolerance
    loose = SenseOperator(maps, mask, coil_tolerance=1e-2)
    x = _rand((1, *maps.shape[-2:]), 7)
    assert float((loose.normal(x) - exact.normal(x)).norm()) > 1e-8 * float(x.norm())


def test_compressed_normal_is_hermitian_positive_semidefinite():
    maps, mask = _birdcage_problem()
    op = SenseOperator(maps, mask, coil_tolerance=1e-3)
    x, y = _rand((1, *maps.shape[-2:]), 1), _rand((1, *maps.shape[-2:]), 2)
    lhs = torch.vdot(op.normal(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.normal(y).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    quad = torch.vdot(x.flatten(), op.normal(x).flatten())
    assert abs(float(quad.imag)) < 1e-10 * abs(float(quad.real)) and float(quad.real) > 0


def test_zero_tolerance_keeps_every_coil_and_matches_forward_adjoint():
    maps, mask = _birdcage_problem()
    op = SenseOperator(maps, mask, coil_tolerance=0)
    assert all(virtual.shape[1] == maps.shape[1] for _, virtual, _ in op._blocks)
    x = _rand((1, *maps.shape[-2:]), 3)
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-12)


def test_row_blocks_and_batches_give_the_same_normal():
    maps, mask = _birdcage_problem()
    batch = torch.cat([maps, maps.flip(-1)])  # two different slices share one row plan
    x = _rand((2, *maps.shape[-2:]), 4)
    exact = SenseOperator(batch, mask, coil_tolerance=0).adjoint(
        SenseOperator(batch, mask, coil_tolerance=0).forward(x)
    )
    for row_block in (8, maps.shape[-2]):  # CPU-style blocks, GPU-style all rows at once
        op = SenseOperator(batch, mask, coil_tolerance=1e-6, row_block=row_block)
        bound = 1e-6 * op.lipschitz().reshape(-1, 1, 1) * x.flatten(1).norm(dim=1)[:, None, None]
        assert bool(((op.normal(x) - exact).flatten(1).norm(dim=1) <= bound.flatten()).all())


@pytest.mark.parametrize("tolerance", [1e-4, 1e-2])
def test_every_slice_of_a_batch_keeps_its_bound_when_slices_need_different_coil_counts(tolerance):
    """A smooth slice (few virtual coils) batched with a rough one (all coils): each row keeps
    the coils its NEEDIEST slice asks for (it once kept the fewest: the rough slice's A^H A
    lost most of its energy and batched PI-CS differed from per-slice PI-CS by 100 %)."""
    maps, mask = _birdcage_problem()
    rough = _rand(maps.shape, 11) * (maps.abs() > 0)
    rough = rough / rough.abs().square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)
    batch = torch.cat([maps, rough])
    x = _rand((2, *maps.shape[-2:]), 12)
    exact = SenseOperator(batch, mask, coil_tolerance=0)
    op = SenseOperator(batch, mask, coil_tolerance=tolerance)
    err = (op.normal(x) - exact.adjoint(exact.forward(x))).flatten(1).norm(dim=1)
    bound = tolerance * exact.lipschitz() * x.flatten(1).norm(dim=1)
    assert bool((err <= bound).all()), (err, bound)
    alone = SenseOperator(maps, mask, coil_tolerance=tolerance)
    assert max(v.shape[1] for _, v, _ in alone._blocks) < maps.shape[1]  # smooth alone: fewer


@pytest.mark.parametrize("tolerance", [3e-3, 1e-2])
def test_two_dimensional_masks_use_one_coil_mixing_per_slice_within_the_bound(tolerance):
    maps, _ = _birdcage_problem()
    mask = PoissonDiscMask(4, 0.15)(maps.shape[-2:], seed=0).to(torch.float64)
    exact = SenseOperator(maps, mask, coil_tolerance=0)
    op = SenseOperator(maps, mask, coil_tolerance=tolerance)
    assert not op.columns
    assert op._normal_maps is not None and op._normal_maps[0].shape[1] < maps.shape[1]
    assert torch.allclose(op.lipschitz(), exact.lipschitz(), rtol=1e-12)
    bound = tolerance * float(exact.lipschitz()[0])
    for seed in range(3):
        x = _rand((1, *maps.shape[-2:]), seed)
        err = (op.normal(x) - exact.adjoint(exact.forward(x))).norm()
        assert float(err) <= bound * float(x.norm())
    assert exact._normal_maps is None  # 0 keeps every coil


def test_pics_and_cg_sense_with_default_compression_match_exact_solves():
    maps, mask = _birdcage_problem(n=96, dtype=torch.complex64)
    sp = pytest.importorskip("sigpy")
    image = torch.from_numpy(sp.shepp_logan((96, 96))).to(torch.complex64)[None]
    kspace = fft2c(maps * image[:, None]) * mask
    for solve, bound in (
        (functools.partial(pics_reconstruct, lam=0.01, iterations=30, coil_tolerance=1e-5), 2e-5),
        (functools.partial(sense_reconstruct, iterations=10), 2e-5),
        # PI-CS's looser default (PICS_COIL_TOLERANCE): a 1 % operator bound, image error ~3e-3 here
        (functools.partial(pics_reconstruct, lam=0.01, iterations=30), 5e-3),
    ):
        exact = solve(kspace, mask, maps, coil_tolerance=0)
        fast = solve(kspace, mask, maps)
        assert float((fast - exact).norm() / exact.norm()) < bound


def test_lipschitz_bound_is_unchanged_by_compression_and_bounds_the_normal():
    maps, mask = _birdcage_problem()
    exact = SenseOperator(maps, mask, coil_tolerance=0)
    compressed = SenseOperator(maps, mask, coil_tolerance=1e-3)
    assert torch.allclose(compressed.lipschitz(), exact.lipschitz(), rtol=1e-12)
    direct = (maps.abs() ** 2).sum(1).flatten(1).amax(1)
    assert torch.allclose(exact.lipschitz(), direct, rtol=1e-12)
    x = _rand((1, *maps.shape[-2:]), 6)
    for _ in range(20):  # power iteration: ||A^H A|| <= the bound
        x = compressed.normal(x) / x.norm()
    assert float(x.norm()) <= float(compressed.lipschitz()[0]) * (1 + 1e-9)


def test_batched_pics_equals_slice_by_slice_on_different_slices():
    """The GPU default solves all slices at once: it must give each slice's own solution."""
    maps, mask = _birdcage_problem(dtype=torch.complex64)
    n = maps.shape[-1]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    images = torch.stack([(xx**2 + yy**2 < 0.5).to(maps.dtype), (xx.abs() < 0.3).to(maps.dtype)])
    batch_maps = torch.cat([maps, torch.roll(maps, n // 4, dims=-2)])  # other rows, other coils
    kspace = fft2c(batch_maps * images[:, None]) * mask
    one = pics_reconstruct(kspace, mask, batch_maps, lam=0.01, iterations=20, chunk_size=1)
    both = pics_reconstruct(kspace, mask, batch_maps, lam=0.01, iterations=20, chunk_size=2)
    assert float((both - one).abs().max()) <= 1e-3 * float(one.abs().max())
