"""Bad HDF5 files: k-space given to mrinet.reconstruct, reconstructions given to mrinet.train."""

from __future__ import annotations

import numpy as np
import pytest

from mrinet.errors import ConfigError, DataFormatError, MrinetError
from mrinet.io.fastmri import write_kspace_volume, write_reconstruction
from tests.helpers import RECON, assert_clear, guarded_run, write_recon_dir


def kspace(slices: int = 1, coils: int = 4, n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (slices, coils, n, n)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def bad_kspace_file(path, case: str) -> None:
    import h5py

    if case == "not_hdf5":
        path.write_text("not hdf5\n" * 100)
    elif case == "truncated":
        write_kspace_volume(path, kspace(), "t", recon_size=(32, 32))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with h5py.File(path, "w") as f:
            if case == "no_kspace":
                f["image"] = np.zeros((1, 4, 32, 32), np.float32)
            elif case == "float_kspace":
                f["kspace"] = np.zeros((1, 4, 32, 32), np.float32)
            elif case == "rank3":
                f["kspace"] = np.zeros((1, 32, 32), np.complex64)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_hdf5", "not a readable HDF5"),
        ("truncated", "truncated"),
        ("no_kspace", "no 'kspace' dataset"),
        ("float_kspace", "expected complex (slices, coils, H, W)"),
        ("rank3", "expected complex (slices, coils, H, W)"),
    ],
)
def test_reconstruct_rejects_bad_kspace_files(tmp_path, case, message):
    from mrinet.reconstruct import main

    (tmp_path / "k").mkdir()
    bad = tmp_path / "k" / "vol.h5"
    bad_kspace_file(bad, case)
    with pytest.raises(DataFormatError) as err:
        main(["--kspace", str(tmp_path / "k"), "--out", str(tmp_path / "r"), "--no-progress"])
    text = str(err.value)
    assert message in text and str(bad) in text and "fix:" in text, text
    assert not list(tmp_path.glob("r/**/*.h5"))  # nothing written for a bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--acceleration", "0.5"], "acceleration"),
        (["--acceleration", "-2"], "acceleration"),
        (["--center-fraction", "0.01"], "too few to estimate coil maps"),
        (["--center-fraction", "0.5"], "center_fraction"),
    ],
)
def test_reconstruct_rejects_bad_sampling_settings(tmp_path, args, message):
    from mrinet.reconstruct import main

    write_kspace_volume(tmp_path / "k" / "vol.h5", kspace(n=320), "t")
    with pytest.raises(ConfigError) as err:
        main(
            ["--kspace", str(tmp_path / "k"), "--out", str(tmp_path / "r"), "--no-progress", *args]
        )
    assert message in str(err.value) and "fix:" in str(err.value)


def test_reconstruct_cli_exits_1_with_one_message(tmp_path, cli):
    (tmp_path / "k").mkdir()
    bad_kspace_file(tmp_path / "k" / "vol.h5", "rank3")
    proc = cli(
        "mrinet.reconstruct",
        "--kspace",
        str(tmp_path / "k"),
        "--out",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert (
        "expected complex" in proc.stderr
        and "vol.h5" in proc.stderr
        and "Traceback" not in proc.stderr
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_hdf5", "HDF5"),
        ("truncated", "truncated"),
        ("no_reconstruction", "reconstruction"),
        ("rank2", "reconstruction"),
        ("complex", "reconstruction"),
        ("sizes", "vol1.h5"),
    ],
)
def test_train_rejects_bad_reconstruction_files(tmp_path, paths_for, capsys, case, message):
    import h5py

    root = write_recon_dir(tmp_path / "recon")
    bad = root / "pics_R4" / "vol1.h5"
    if case == "not_hdf5":
        bad.write_text("not hdf5\n" * 100)
    elif case == "truncated":
        bad.write_bytes(bad.read_bytes()[:3000])
    elif case == "sizes":
        write_reconstruction(bad, np.ones((2, 12, 12), np.float32), np.ones(12), {})
    else:
        bad.unlink()
        with h5py.File(bad, "w") as f:
            if case == "no_reconstruction":
                f["image"] = np.ones((2, 24, 24), np.float32)
            elif case == "rank2":
                f["reconstruction"] = np.ones((24, 24), np.float32)
            elif case == "complex":
                f["reconstruction"] = np.ones((2, 24, 24), np.complex64)
    err = guarded_run("train", [*RECON, f"data.recon_dir={root}", *paths_for()], capsys)
    assert_clear(err, message, bad)


def test_reader_names_mismatched_metric_sizes(tmp_path):
    from mrinet.io.fastmri import read_reconstruction

    path = write_reconstruction(
        tmp_path / "r.h5", np.ones((3, 8, 8)), np.ones(8), {}, {"ssim": np.ones(2)}
    )
    with pytest.raises(MrinetError, match="metric 'ssim' has shape"):
        read_reconstruction(path)
