"""Simulated k-space: physics of the simulator, files, resumability, CLI."""

import json

import numpy as np
import pytest
import torch

from mrinet.cli.simulate_kspace import main
from mrinet.io.fastmri import read_kspace_volume
from mrinet.mri import ifft2c
from mrinet.sim.kspace import coil_sensitivities, nifti_slices, phantom_slices, simulate_kspace
from mrinet.sim.kspace_dataset import simulate_kspace_dataset


def test_phantom_slices_show_t2_contrast_and_fill_the_field_of_view():
    images = phantom_slices(64, 3, np.random.default_rng(0), contrast="T2w", voxel_mm=5.0)
    assert images.shape == (3, 64, 64) and images.dtype == np.float32
    inside = images > 0.1
    assert 0.2 < inside.mean() < 0.8  # a head, not a dot or a full square
    assert images[:, :4].max() < 0.05  # air at the edge


def test_coil_maps_are_smooth_complex_with_unit_peak_rss():
    maps = coil_sensitivities(8, (32, 32), np.random.default_rng(0))
    assert maps.shape == (8, 32, 32) and np.iscomplexobj(maps)
    assert np.isclose(np.sqrt((np.abs(maps) ** 2).sum(0)).max(), 1.0, atol=1e-5)
    assert np.abs(np.diff(np.abs(maps), axis=-1)).max() < 0.2


def test_simulated_kspace_noise_level_matches_snr():
    rng = np.random.default_rng(0)
    images = np.zeros((1, 64, 64), np.float32)
    images[0, 16:48, 16:48] = 1.0
    kspace = simulate_kspace(images, 4, rng, snr=20.0)
    coil_images = ifft2c(torch.from_numpy(kspace)).numpy()
    background = coil_images[0, :, :6, :6]
    sigma = np.sqrt((np.abs(background) ** 2).mean() / 2)
    assert np.isclose(sigma, 1 / 20 / np.sqrt(2), rtol=0.2)


def test_readout_oversampling_doubles_readout_and_centres_object():
    images = np.ones((1, 32, 16), np.float32)
    kspace = simulate_kspace(images, 2, np.random.default_rng(0), snr=1e6, readout_oversampling=2)
    assert kspace.shape == (1, 2, 64, 16)
    energy = (np.abs(ifft2c(torch.from_numpy(kspace)).numpy()) ** 2).sum((0, 1, 3))
    assert energy[:12].sum() < 1e-3 * energy[16:48].sum()


def test_dataset_files_resumable_and_reproducible(tmp_path):
    kw = dict(volumes=2, slices=2, coils=4, seed=3, size=32, voxel_mm=7.0, progress=False)
    paths = simulate_kspace_dataset(tmp_path / "a", **kw)
    assert [p.name for p in paths] == ["file_brain_AXT2_sim_0000.h5", "file_brain_AXT2_sim_0001.h5"]
    vol = read_kspace_volume(paths[1])
    assert vol.kspace.shape == (2, 4, 32, 32)
    assert json.loads(vol.attrs["mrinet_simulation"])["seed"] == 3
    mtime = paths[0].stat().st_mtime_ns
    simulate_kspace_dataset(tmp_path / "a", **{**kw, "volumes": 3})
    assert paths[0].stat().st_mtime_ns == mtime  # finished files are skipped
    # volume i is the same whether made in one run or resumed
    again = simulate_kspace_dataset(tmp_path / "b", **{**kw, "volumes": 3})
    assert np.array_equal(
        read_kspace_volume(again[2]).kspace,
        read_kspace_volume(tmp_path / "a" / again[2].name).kspace,
    )


def test_nifti_anatomy_source(tmp_path):
    nifti = pytest.importorskip("mrinet.io.nifti")
    vol = np.zeros((20, 20, 10), np.float32)
    vol[5:15, 5:15] = 100.0
    path = tmp_path / "t1.nii.gz"
    nifti.save_nifti(path, vol, np.eye(4))
    images = nifti_slices(vol, 32, 3)
    assert images.shape == (3, 32, 32) and 0.9 < images.max() < 1.1
    out = simulate_kspace_dataset(
        tmp_path / "d", volumes=1, slices=2, coils=2, size=32, anatomy=path, progress=False
    )
    assert json.loads(read_kspace_volume(out[0]).attrs["mrinet_simulation"])["anatomy"] == str(path)


def test_cli_writes_files(tmp_path):
    paths = main(
        [
            "--out",
            str(tmp_path),
            "--volumes",
            "1",
            "--slices",
            "1",
            "--coils",
            "2",
            "--size",
            "32",
            "--no-progress",
        ]
    )
    assert len(paths) == 1 and paths[0].exists()


def test_snr_range_and_contrast_list_vary_per_volume(tmp_path):
    """Each volume draws its SNR from the range and takes the next contrast; files record both."""
    paths = simulate_kspace_dataset(
        tmp_path,
        volumes=4,
        slices=1,
        coils=2,
        size=32,
        voxel_mm=7.0,
        snr=[10, 100],
        contrast=["T2w", "T1w"],
        progress=False,
    )
    assert [p.name[:17] for p in paths] == ["file_brain_AXT2_s", "file_brain_AXT1_s"] * 2
    sims = [json.loads(read_kspace_volume(p).attrs["mrinet_simulation"]) for p in paths]
    snrs = [s["volume_snr"] for s in sims]
    assert all(10 <= s <= 100 for s in snrs) and len(set(snrs)) == 4
    assert [s["contrast"] for s in sims] == ["T2w", "T1w", "T2w", "T1w"]
    assert sims[0]["snr"] == [10.0, 100.0] and all(s["noise_std"] > 0 for s in sims)
    # a fixed SNR draws nothing: the same files as before the option existed
    fixed = simulate_kspace_dataset(
        tmp_path / "fixed", volumes=1, slices=1, coils=2, size=32, voxel_mm=7.0, progress=False
    )
    assert json.loads(read_kspace_volume(fixed[0]).attrs["mrinet_simulation"])["volume_snr"] == 30
    with pytest.raises(ValueError, match="range"):
        simulate_kspace_dataset(tmp_path / "bad", volumes=1, size=32, snr=[50, 10], progress=False)
    with pytest.raises(ValueError, match="contrast"):
        simulate_kspace_dataset(
            tmp_path / "bad", volumes=1, size=32, contrast=["PD"], progress=False
        )


def test_anatomy_slices_are_brains_with_their_own_pose():
    """mni_aparc volumes: T2w CSF brightest, T1w white matter brighter than cortex, each volume
    its own warp and pose."""
    from mrinet.sim.kspace import anatomy_slices

    t2 = anatomy_slices(96, 2, np.random.default_rng(0), contrast="T2w", voxel_mm=2.5)
    again = anatomy_slices(96, 2, np.random.default_rng(1), contrast="T2w", voxel_mm=2.5)
    t1 = anatomy_slices(96, 2, np.random.default_rng(0), contrast="T1w", voxel_mm=2.5)
    assert t2.shape == (2, 96, 96) and t2.dtype == np.float32
    inside = t2 > 0.1
    assert 0.2 < inside.mean() < 0.8 and t2[:, :4].max() < 0.05
    assert np.percentile(t2[inside], 99) > 0.8  # CSF (1.0) in ventricles and sulci
    assert np.percentile(t1[t1 > 0.1], 90) > 0.7  # white matter ~0.82
    assert np.abs(t2 - again).mean() > 0.02


def test_anatomy_volumes_load_in_fastmri_slice_dataset(tmp_path):
    pytest.importorskip("requests")
    mri_data = pytest.importorskip("fastmri.data.mri_data")
    paths = simulate_kspace_dataset(
        tmp_path,
        volumes=2,
        slices=2,
        coils=2,
        size=64,
        contrast=["T2w", "T1w"],
        anatomy="mni_aparc",
        progress=False,
    )
    assert json.loads(read_kspace_volume(paths[0]).attrs["mrinet_simulation"])["anatomy"] == (
        "mni_aparc"
    )
    ds = mri_data.SliceDataset(tmp_path, challenge="multicoil", use_dataset_cache=False)
    assert len(ds) == 4
    kspace, _mask, target, _attrs, _fname, _slice = ds[0]
    assert kspace.shape == (2, 64, 64) and target.shape == (64, 64)


def _h5_arrays(folder):
    """{relative path: {dataset: array}} of every HDF5 file under `folder`."""
    import h5py

    out = {}
    for path in sorted(folder.rglob("*.h5")):
        with h5py.File(path) as f:
            names = []
            f.visit(names.append)
            out[str(path.relative_to(folder))] = {
                n: f[n][()] for n in names if isinstance(f[n], h5py.Dataset)
            }
    return out


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: spawns
def test_first_use_pool_writes_what_simulate_then_reconstruct_writes(tmp_path, workers):
    """The recon cache's one pass per volume (simulate, reconstruct; in a pool of `workers`
    spawned processes) gives the same files, bit for bit, as the dataset simulator followed by
    the reconstruction driver."""
    from mrinet.recon.driver import reconstruct_dataset
    from mrinet.sim.recon_cache import build_synthetic_recon

    sim = dict(
        volumes=3, slices=2, coils=4, size=96, voxel_mm=4.0, snr=[10, 160],
        contrast=["T2w", "T1w"], anatomy="mni_aparc", progress=False,
    )  # fmt: skip
    recon = dict(
        acceleration=4, center_fraction=0.125, method="pics", wavelet="haar", iterations=5,
        lam=0.002, reference_noise="matched", workers=workers, progress=False,
    )  # fmt: skip
    simulate_kspace_dataset(tmp_path / "old" / "kspace", **sim)
    reconstruct_dataset(tmp_path / "old" / "kspace", tmp_path / "old" / "recon", **recon)
    build_synthetic_recon(tmp_path / "new" / "kspace", tmp_path / "new" / "recon", sim, [recon])
    old, new = _h5_arrays(tmp_path / "old"), _h5_arrays(tmp_path / "new")
    assert sorted(old) == sorted(new) and len(old) == 3 * 3  # k-space, reference, R=4
    for name, datasets in old.items():
        assert sorted(datasets) == sorted(new[name])
        for key, value in datasets.items():
            np.testing.assert_array_equal(value, new[name][key], err_msg=f"{name}:{key}")


def test_first_use_refuses_a_bad_protocol_before_simulating(tmp_path):
    from mrinet.errors import ConfigError
    from mrinet.sim.recon_cache import build_synthetic_recon

    with pytest.raises(ConfigError, match="iteratons"):
        build_synthetic_recon(
            tmp_path / "k", tmp_path / "r", {"volumes": 1}, [{"acceleration": 4, "iteratons": 5}]
        )
    assert not (tmp_path / "k").exists()
