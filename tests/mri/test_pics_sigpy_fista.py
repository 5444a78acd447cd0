"""PI-CS with the Haar prior equals sigpy's FISTA with the same unitary Haar transform."""

import pytest
import torch

from mrinet.mri import fft2c, pics_reconstruct, zero_filled
from mrinet.mri.coils import espirit_maps
from mrinet.mri.masks import RandomMask
from mrinet.mri.pics import PICS_COIL_TOLERANCE, data_scale
from mrinet.mri.sense import DEFAULT_COIL_TOLERANCE
from mrinet.mri.wavelets import Wavelet2d


def test_haar_pics_equals_sigpy_fista_with_the_same_levels():
    sp = pytest.importorskip("sigpy")
    mr = pytest.importorskip("sigpy.mri")
    n, coils = 96, 8
    image = torch.from_numpy(sp.shepp_logan((n, n))).to(torch.complex64)
    kspace = fft2c(torch.from_numpy(mr.birdcage_maps((coils, n, n))).to(torch.complex64) * image)
    g = torch.Generator().manual_seed(0)
    noise = torch.complex(
        torch.randn(kspace.shape, generator=g), torch.randn(kspace.shape, generator=g)
    )
    kspace = (kspace + 0.002 * noise)[None]
    maps = espirit_maps(kspace, calib_width=20)
    mask = RandomMask([0.1], [4])(kspace.shape, seed=0)
    kspace = kspace * mask
    # the near-exact operator (CG-SENSE's bound): this test checks the algorithm; the looser
    # PI-CS default (PICS_COIL_TOLERANCE, 1 %) moves this image by ~0.4 % (checked below)
    ours, loose = (
        pics_reconstruct(
            kspace, mask, maps, lam=0.01, iterations=30, wavelet="haar", coil_tolerance=tol
        )[0]
        for tol in (DEFAULT_COIL_TOLERANCE, PICS_COIL_TOLERANCE)
    )
    # sigpy's L1WaveletRecon, built by hand to give its Wavelet our number of levels (96 =
    # 2**5 * 3: 5 levels, every one on even sizes, where pywt's zero mode is the periodized
    # unitary transform); the same lam on the same data scaling
    levels = Wavelet2d((n, n)).levels
    lam = 0.01 / float(data_scale(zero_filled(kspace, mask, maps))[0])
    weights = mask.numpy()
    wavelet = sp.linop.Wavelet((n, n), wave_name="haar", level=levels)
    app = sp.app.LinearLeastSquares(
        mr.linop.Sense(maps[0].numpy(), weights=weights),
        kspace[0].numpy() * weights**0.5,
        proxg=sp.prox.UnitaryTransform(sp.prox.L1Reg(wavelet.oshape, lam), wavelet),
        alpha=1.0,
        max_iter=30,
        show_pbar=False,
    )
    theirs = torch.from_numpy(app.run())
    assert float((ours - theirs).norm() / theirs.norm()) < 1e-4
    assert float((loose - theirs).norm() / theirs.norm()) < 1e-2
