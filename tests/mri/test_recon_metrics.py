"""NMSE/PSNR/SSIM: exact values on simple cases and agreement with torchmetrics."""

import math

import pytest
import torch

from mrinet.mri.metrics import nmse, psnr, ssim


def test_nmse_and_psnr_values():
    ref = torch.ones(2, 8, 8)
    x = ref.clone()
    x[1] += 0.1
    assert torch.allclose(nmse(ref, x), torch.tensor([0.0, 0.01], dtype=torch.float64))
    assert math.isclose(float(psnr(ref, x)[1]), 20.0, rel_tol=1e-6)


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 32, 32, generator=g)
    assert torch.allclose(ssim(ref, ref), torch.ones(2, dtype=torch.float64))
    noisy = ref + 0.2 * torch.randn(2, 32, 32, generator=g)
    assert (ssim(ref, noisy) < 0.9).all()


def test_ssim_close_to_torchmetrics_uniform_window():
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(1, 64, 64, generator=g, dtype=torch.float64)
    x = ref + 0.1 * torch.randn(1, 64, 64, generator=g, dtype=torch.float64)
    theirs = tm.structural_similarity_index_measure(
        x[:, None], ref[:, None], gaussian_kernel=False, kernel_size=7, data_range=float(ref.max())
    )
    assert abs(float(ssim(ref, x)[0]) - float(theirs)) < 0.02
