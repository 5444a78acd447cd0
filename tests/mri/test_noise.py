"""Receiver noise: the k-space estimate recovers the injected std; matched noise adds up."""

import math

import numpy as np
import pytest
import torch

from mrinet.mri.noise import add_complex_noise, estimate_noise_std, matched_noise_std
from mrinet.sim.kspace import phantom_slices, simulate_kspace


def test_estimate_recovers_known_noise_on_pure_noise():
    gen = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    kspace = add_complex_noise(torch.zeros(4, 3, 128, 128, dtype=torch.complex64), sigma, gen)
    assert estimate_noise_std(kspace) == pytest.approx(sigma, rel=0.05)


def test_estimate_recovers_the_simulators_noise_under_brain_signal():
    """The corners of a phantom's k-space are noise: the estimate is the simulated sigma."""
    rng = np.random.default_rng(4)
    images = phantom_slices(128, 2, rng, voxel_mm=4.0)
    for snr in (10.0, 80.0):
        kspace = torch.from_numpy(simulate_kspace(images, 4, np.random.default_rng(1), snr=snr))
        signal = float(images[images > 0.05 * images.max()].mean())
        sigma = signal / snr / math.sqrt(2)  # the simulator's definition of snr
        assert estimate_noise_std(kspace) == pytest.approx(torch.full((4,), sigma), rel=0.08)


def test_matched_noise_makes_the_total_variance_r_times():
    gen = torch.Generator().manual_seed(1)
    sigma = torch.tensor([1.0, 3.0])
    base = add_complex_noise(torch.zeros(4, 2, 64, 64, dtype=torch.complex64), sigma, gen)
    added = matched_noise_std(sigma, 4.0)
    total = add_complex_noise(base, added, gen)
    measured = total.real.std(dim=(0, 2, 3))
    assert measured == pytest.approx(sigma * 2.0, rel=0.03)  # sqrt(R) = 2
    assert matched_noise_std(sigma, 1.0).abs().max() == 0.0
    with pytest.raises(ValueError, match="acceleration"):
        matched_noise_std(sigma, 0.5)


def test_estimate_rejects_real_or_wrongly_shaped_input():
    with pytest.raises(ValueError, match="complex"):
        estimate_noise_std(torch.zeros(1, 2, 8, 8))
