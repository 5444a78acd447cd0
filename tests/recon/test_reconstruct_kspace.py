"""reconstruct_dataset: reference by the same pipeline at R=1, files, metrics, geometry, errors."""

import numpy as np
import pytest

from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError
from mrinet.io.fastmri import read_reconstruction, write_kspace_volume
from mrinet.reconstruct import main, reconstruct_dataset, remove_readout_oversampling
from mrinet.sim.kspace import simulate_kspace


def _images(n=64, slices=2):
    yy, xx = np.mgrid[:n, :n] - n / 2
    img = ((yy / (0.4 * n)) ** 2 + (xx / (0.3 * n)) ** 2 < 1).astype(np.float32)
    img += 0.5 * ((yy / (0.1 * n)) ** 2 + ((xx - 0.1 * n) / (0.08 * n)) ** 2 < 1)
    return np.repeat(img[None], slices, 0)


@pytest.fixture(scope="module")
def kspace_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kspace")
    for i in range(2):
        k = simulate_kspace(_images(), 4, np.random.default_rng(i), snr=40)
        write_kspace_volume(d / f"vol{i}.h5", k, f"p{i}")
    return d


def test_reference_and_pics_files_with_metrics(kspace_dir, tmp_path):
    out = reconstruct_dataset(
        kspace_dir, tmp_path, acceleration=4, center_fraction=0.25, iterations=15, progress=False
    )
    assert set(out) == {"reference", "pics_R4"} and len(out["pics_R4"]) == 2
    ref = read_reconstruction(out["reference"][0])
    rec = read_reconstruction(out["pics_R4"][0])
    assert rec.reconstruction.shape == (2, 64, 64)  # smaller than 320: cropped, never padded
    assert rec.attrs["acceleration"] == 4.0 and rec.attrs["method"] == "pics"
    assert rec.attrs["iterations"] == 15 and rec.attrs["center_fraction"] == 0.25
    assert 3.0 < rec.attrs["realised_acceleration"] < 5.5
    assert ref.attrs["acceleration"] == 1.0
    assert (rec.metrics["psnr"] > 20).all() and (rec.metrics["ssim"] > 0.5).all()
    # same pipeline: the background level of reference and R=4 agree (no RSS-vs-PICS shortcut)
    bg = np.zeros(ref.reconstruction.shape[1:], bool)
    bg[:4] = True
    ratio = ref.reconstruction[:, bg].mean() / max(rec.reconstruction[:, bg].mean(), 1e-12)
    assert 0.5 < ratio < 2.0


def test_resumable_skips_finished_volumes(kspace_dir, tmp_path):
    kw = dict(acceleration=4, center_fraction=0.25, method="zero_filled", progress=False)
    out = reconstruct_dataset(kspace_dir, tmp_path, **kw)
    mtimes = [p.stat().st_mtime_ns for p in out["zero_filled_R4"]]
    reconstruct_dataset(kspace_dir, tmp_path, **kw)
    assert [p.stat().st_mtime_ns for p in out["zero_filled_R4"]] == mtimes


def test_sense_method_and_cli(kspace_dir, tmp_path):
    out = main(
        [
            "--kspace",
            str(kspace_dir),
            "--out",
            str(tmp_path),
            "--method",
            "sense",
            "--center-fraction",
            "0.25",
            "--no-progress",
            "--no-reference",
        ]
    )
    assert set(out) == {"sense_R4"}
    assert read_reconstruction(out["sense_R4"][1]).attrs["method"] == "sense"


def test_fastmri_geometry_is_cropped_to_320(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((1, 320, 368), np.float32)
    images[0, 60:260, 80:290] = 1.0
    kspace = simulate_kspace(images, 4, rng, snr=50, readout_oversampling=2)  # (1, 4, 640, 368)
    write_kspace_volume(tmp_path / "k" / "real_like.h5", kspace, "x")
    out = reconstruct_dataset(tmp_path / "k", tmp_path / "r", method="zero_filled", progress=False)
    rec = read_reconstruction(out["zero_filled_R4"][0])
    assert rec.reconstruction.shape == (1, 320, 320)
    assert rec.mask.shape[-1] == 368


def test_remove_readout_oversampling_keeps_central_image():
    import torch

    from mrinet.mri import fft2c, ifft2c

    g = torch.Generator().manual_seed(0)
    img = torch.zeros(1, 1, 16, 8, dtype=torch.complex64)
    img[..., 4:12, :] = torch.randn(8, 8, generator=g).to(torch.complex64)
    k = remove_readout_oversampling(fft2c(img), 8)
    assert torch.allclose(ifft2c(k), img[..., 4:12, :], atol=1e-5)


def test_errors_name_the_problem(kspace_dir, tmp_path):
    with pytest.raises(DataNotFoundError, match="no k-space files"):
        reconstruct_dataset(tmp_path / "empty", tmp_path / "o", progress=False)
    with pytest.raises(ConfigError, match="unknown method"):
        reconstruct_dataset(kspace_dir, tmp_path / "o", method="magic", progress=False)
    with pytest.raises(ConfigError, match="wider than the fully sampled"):
        reconstruct_dataset(
            kspace_dir, tmp_path / "o", center_fraction=0.25, calib_width=30, progress=False
        )


def test_matched_reference_has_the_noise_of_an_r_fold_scan(kspace_dir, tmp_path):
    """reference_noise=matched: own tag, attrs say what was added, and the R=1 image carries
    exactly that extra noise (sigma * sqrt(R - 1) per sample: ortho FFT, unit-RSS coil maps)."""
    kw = dict(acceleration=4, center_fraction=0.25, iterations=15, lam=0.0, progress=False)
    plain = reconstruct_dataset(kspace_dir, tmp_path / "plain", **kw)
    matched = reconstruct_dataset(kspace_dir, tmp_path / "m", reference_noise="matched", **kw)
    assert set(matched) == {"reference_matched_R4", "pics_R4"}
    ref = read_reconstruction(matched["reference_matched_R4"][0])
    assert ref.attrs["reference_noise"] == "matched"
    realised = ref.attrs["noise_matched_acceleration"]
    assert 3.0 < realised < 5.5
    np.testing.assert_allclose(
        ref.attrs["added_noise_std"], ref.attrs["estimated_noise_std"] * np.sqrt(realised - 1)
    )
    images = _images()
    inside = images[0] > 0.5
    inside &= np.roll(inside, 3, 0) & np.roll(inside, -3, 0)  # away from the edges
    added = ref.reconstruction - read_reconstruction(plain["reference"][0]).reconstruction
    spread = added[:, inside].std()  # magnitude: the noise part along the signal's phase
    assert spread == pytest.approx(float(np.mean(ref.attrs["added_noise_std"])), rel=0.2)
    # the accelerated images are the same in both runs (only the reference changes)
    np.testing.assert_array_equal(
        read_reconstruction(matched["pics_R4"][0]).reconstruction,
        read_reconstruction(plain["pics_R4"][0]).reconstruction,
    )
    with pytest.raises(ConfigError, match="reference_noise"):
        reconstruct_dataset(kspace_dir, tmp_path / "x", reference_noise="loud", progress=False)


def test_auto_lam_is_chosen_on_the_accelerated_data_and_reused_for_the_reference(tmp_path):
    """Consistency: one lam per volume, from cross-validation at R=4, in both files' attrs,
    and the reference is the same solver at R=1 with that lam on the shared scaling."""
    k = simulate_kspace(_images(n=96, slices=2), 4, np.random.default_rng(5), snr=30)
    write_kspace_volume(tmp_path / "k" / "vol.h5", k, "p")
    out = reconstruct_dataset(
        tmp_path / "k", tmp_path / "r", center_fraction=0.1, iterations=10, progress=False
    )
    ref = read_reconstruction(out["reference"][0]).attrs
    acc = read_reconstruction(out["pics_R4"][0]).attrs
    assert acc["lam_rule"].startswith("auto: cross-validation on R=4")
    assert ref["lam"] == acc["lam"] and 1e-4 < acc["lam"] < 1.0
    assert ref["lam_rule"] == acc["lam_rule"] and ref["wavelet"] == "db4"


def test_a_nan_sample_is_an_error_naming_file_slice_and_coil_and_the_script_exits_non_zero(
    tmp_path,
):
    import os
    import subprocess
    import sys
    from pathlib import Path

    k = simulate_kspace(_images(), 4, np.random.default_rng(0), snr=40)
    k[1, 2, 10, 20] = np.nan
    write_kspace_volume(tmp_path / "k" / "broken.h5", k, "p")
    with pytest.raises(DataFormatError, match=r"slice 1, coil 2") as info:
        reconstruct_dataset(tmp_path / "k", tmp_path / "r", center_fraction=0.25, progress=False)
    assert "broken.h5" in str(info.value)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    run = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "reconstruct.py"),
            "--kspace",
            str(tmp_path / "k"),
            "--out",
            str(tmp_path / "r2"),
            "--center-fraction",
            "0.25",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode != 0
    assert "broken.h5" in run.stderr and "slice 1, coil 2" in run.stderr
    assert not list((tmp_path / "r2").rglob("*.h5"))  # nothing half-written
