"""reconstruct(kspace, protocol): tensors in and out, and exactly what the file driver writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrinet.io.fastmri import read_reconstruction, write_kspace_volume
from mrinet.mri.masks import seed_from_name
from mrinet.recon import ReconProtocol, reconstruct, reconstruct_file
from mrinet.sim.kspace import simulate_kspace

PROTOCOL = ReconProtocol(acceleration=4, center_fraction=0.25, iterations=3, lam=0.01)


@pytest.fixture(scope="module")
def kspace() -> np.ndarray:
    n = 48
    yy, xx = np.mgrid[:n, :n] - n / 2
    image = ((yy / (0.4 * n)) ** 2 + (xx / (0.3 * n)) ** 2 < 1).astype(np.float32)
    return simulate_kspace(np.repeat(image[None], 2, 0), 4, np.random.default_rng(0), snr=40)


def test_reconstruct_returns_image_reference_and_the_attrs_of_both(kspace):
    image, reference, attrs = reconstruct(torch.from_numpy(kspace), PROTOCOL, seed=3)
    assert image.shape == reference.shape == (2, 48, 48) and image.dtype == torch.float32
    assert attrs["image"]["acceleration"] == 4.0 and attrs["reference"]["acceleration"] == 1.0
    assert attrs["image"]["lam"] == attrs["reference"]["lam"] == 0.01
    assert attrs["image"]["lam_rule"] == "given" and attrs["image"]["iterations"] == 3
    assert 3.0 < attrs["image"]["realised_acceleration"] < 5.5
    assert attrs["metrics"]["psnr"].shape == (2,) and (attrs["metrics"]["psnr"] > 15).all()


def test_the_file_driver_writes_what_reconstruct_returns(kspace, tmp_path):
    path = tmp_path / "k" / "vol7.h5"
    write_kspace_volume(path, kspace, "p")
    outputs = reconstruct_file(path, tmp_path / "r", PROTOCOL)
    assert list(outputs) == ["reference", "pics_R4"]
    image, reference, attrs = reconstruct(
        torch.from_numpy(kspace), PROTOCOL, seed=seed_from_name("vol7"), source=str(path)
    )
    written = read_reconstruction(outputs["pics_R4"])
    np.testing.assert_array_equal(written.reconstruction, image.numpy())
    np.testing.assert_array_equal(
        read_reconstruction(outputs["reference"]).reconstruction, reference.numpy()
    )
    assert written.attrs == pytest.approx(attrs["image"])
    for name, values in attrs["metrics"].items():
        np.testing.assert_array_equal(written.metrics[name], values)
