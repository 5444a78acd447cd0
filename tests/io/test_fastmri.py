"""fastMRI HDF5 files: round trip, read by fastMRI's SliceDataset, validation errors."""

import json

import h5py
import numpy as np
import pytest

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.fastmri import (
    ismrmrd_header,
    read_kspace_volume,
    read_reconstruction,
    write_kspace_volume,
    write_reconstruction,
)


def _kspace(slices=2, coils=4, h=320, w=320, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((slices, coils, h, w)) + 1j * rng.standard_normal((slices, coils, h, w))
    ).astype(np.complex64)


def test_kspace_volume_round_trip_with_rss_and_attrs(tmp_path):
    k = _kspace()
    path = write_kspace_volume(tmp_path / "vol.h5", k, "sim0001", simulation={"seed": 3})
    vol = read_kspace_volume(path)
    assert vol.kspace.dtype == np.complex64 and np.array_equal(vol.kspace, k)
    assert (
        vol.reconstruction_rss.shape == (2, 320, 320) and vol.reconstruction_rss.dtype == np.float32
    )
    expected = np.sqrt(
        (
            np.abs(
                np.fft.fftshift(
                    np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
                )
            )
            ** 2
        ).sum(1)
    )
    assert np.allclose(vol.reconstruction_rss, expected, rtol=1e-4, atol=1e-5)
    assert vol.encoded_size == (320, 320) and vol.recon_size == (320, 320)
    assert vol.attrs["patient_id"] == "sim0001" and vol.attrs["acquisition"] == "AXT2"
    assert np.isclose(vol.attrs["max"], vol.reconstruction_rss.max())
    assert np.isclose(vol.attrs["norm"], np.linalg.norm(vol.reconstruction_rss))
    assert json.loads(vol.attrs["mrinet_simulation"]) == {"seed": 3}
    with h5py.File(path) as f:
        assert f["kspace"].compression is None
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary


def test_fastmri_slice_dataset_reads_our_files(tmp_path):
    pytest.importorskip("requests")
    mri_data = pytest.importorskip("fastmri.data.mri_data")
    write_kspace_volume(tmp_path / "a.h5", _kspace(slices=3), "a")
    write_kspace_volume(tmp_path / "b.h5", _kspace(slices=2, seed=1), "b")
    ds = mri_data.SliceDataset(tmp_path, challenge="multicoil", use_dataset_cache=False)
    assert len(ds) == 5
    kspace, _mask, target, attrs, _fname, _dataslice = ds[0]
    assert kspace.shape == (4, 320, 320) and target.shape == (320, 320)
    assert attrs["encoding_size"] == (320, 320, 1) and attrs["recon_size"] == (320, 320, 1)
    assert attrs["padding_left"] == 0 and attrs["padding_right"] == 320


def test_real_fastmri_shaped_file_with_readout_oversampling_loads(tmp_path):
    """16 coils, 640 x 368 (2x readout oversampling), recon 320 x 320, as fastMRI brain files."""
    k = _kspace(slices=1, coils=16, h=640, w=368)
    path = tmp_path / "file_brain_AXT2_200_6002217.h5"
    with h5py.File(path, "w") as f:  # written as fastMRI does, not through our writer
        f["kspace"] = k
        f["reconstruction_rss"] = np.zeros((1, 320, 320), np.float32)
        f["ismrmrd_header"] = ismrmrd_header((640, 368), (320, 320))
        f.attrs.update({"acquisition": "AXT2", "max": 1.0, "norm": 1.0, "patient_id": "x"})
    vol = read_kspace_volume(path)
    assert vol.kspace.shape == (1, 16, 640, 368)
    assert vol.encoded_size == (640, 368) and vol.recon_size == (320, 320)


def test_reconstruction_round_trip(tmp_path):
    images = np.random.default_rng(0).random((3, 320, 320)).astype(np.float32)
    metrics = {"ssim": np.ones(3), "psnr": np.full(3, 30.0), "nmse": np.zeros(3)}
    attrs = {
        "acceleration": 4.0,
        "center_fraction": 0.08,
        "method": "pics",
        "lam": 0.01,
        "iterations": 30,
    }
    path = write_reconstruction(
        tmp_path / "pics_R4" / "v.h5", images, np.ones((1, 320)), attrs, metrics
    )
    rec = read_reconstruction(path)
    assert np.array_equal(rec.reconstruction, images)
    assert rec.attrs["method"] == "pics" and rec.attrs["acceleration"] == 4.0
    assert set(rec.metrics) == {"ssim", "psnr", "nmse"}


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("not_hdf5", "not a readable HDF5"),
        ("no_kspace", "no 'kspace' dataset"),
        ("float_kspace", "expected complex"),
        ("rank3", "expected complex"),
        ("mismatch", "reconstruction_rss"),
        ("truncated", "truncated"),
    ],
)
def test_invalid_kspace_files_raise_errors_naming_file_and_fix(tmp_path, case, match):
    path = tmp_path / f"{case}.h5"
    if case == "not_hdf5":
        path.write_text("hello")
    elif case == "truncated":
        write_kspace_volume(path, _kspace(slices=1, coils=2), "t")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with h5py.File(path, "w") as f:
            if case == "no_kspace":
                f["image"] = np.zeros((1, 2, 4, 4), np.float32)
            elif case == "float_kspace":
                f["kspace"] = np.zeros((1, 2, 4, 4), np.float32)
            elif case == "rank3":
                f["kspace"] = np.zeros((1, 4, 4), np.complex64)
            elif case == "mismatch":
                f["kspace"] = np.zeros((2, 2, 4, 4), np.complex64)
                f["reconstruction_rss"] = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(DataFormatError, match=match) as err:
        read_kspace_volume(path)
    assert str(path) in str(err.value) and "fix:" in str(err.value)


def test_missing_file_raises_not_found(tmp_path):
    with pytest.raises(DataNotFoundError, match="not found"):
        read_kspace_volume(tmp_path / "nope.h5")
    with pytest.raises(DataNotFoundError):
        read_reconstruction(tmp_path / "nope.h5")
