"""Simulated DTI cohort on disk: HCP layout, shapes/affines, resumable, read back by dwi_features."""

import json

import numpy as np
import pytest

from mrinet.cli.simulate_dti import main
from mrinet.data.tissue.dwi_features import dwi_feature_maps
from mrinet.io.dwi import read_bvals_bvecs, read_dwi_subject
from mrinet.io.nifti import load_nifti
from mrinet.sim.dti_dataset import SUBJECT_FILES, simulate_dti_cohort
from mrinet.sim.phantom import phantom_affine

SMALL = {
    "grid": {"shape": [36, 44, 34], "voxel_mm": 4.0},
    "single_shell": {"n_b0": 2, "n_dirs": 20, "bval": 1000.0},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return out, simulate_dti_cohort(out, subjects=2, seed=3, preset="literature", **SMALL)


def test_every_subject_folder_has_the_hcp_files(cohort):
    out, paths = cohort
    assert [p.name for p in paths] == ["sub-000", "sub-001"]
    for path in paths:
        assert sorted(f.name for f in path.iterdir()) == sorted(SUBJECT_FILES)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_shapes_affines_and_gradients_agree(cohort):
    _, paths = cohort
    affine = phantom_affine((36, 44, 34), 4.0)
    dwi, bvals, bvecs, dwi_affine, mask = read_dwi_subject(paths[0])
    assert dwi.shape == (36, 44, 34, 22) and bvals.shape == (22,) and bvecs.shape == (22, 3)
    np.testing.assert_allclose(dwi_affine, affine)
    assert mask.shape == (36, 44, 34) and mask.any()
    assert np.loadtxt(paths[0] / "bvecs").shape == (3, 22)  # FSL: three rows
    for name in ("T1w", "aparc+aseg", "FA", "MD", "AD", "RD", "nodif_brain_mask"):
        data, aff = load_nifti(paths[0] / f"{name}.nii.gz", ndim=3)
        assert data.shape == (36, 44, 34), name
        np.testing.assert_allclose(aff, affine, err_msg=name)


def test_simulation_json_records_every_parameter(cohort):
    _, paths = cohort
    record = json.loads((paths[1] / "simulation.json").read_text())
    assert record["preset"] == "literature" and record["seed"] == 3 and record["subject"] == 1
    assert record["params"]["grid"]["shape"] == [36, 44, 34]
    assert record["params"]["tissues"]["cc"]["ad"] == [1.70, 0.15]
    assert record["params"]["single_shell"]["n_dirs"] == 20


def test_dwi_feature_maps_reproduce_the_written_maps(cohort):
    _, paths = cohort
    maps, affine = dwi_feature_maps(paths[0])
    np.testing.assert_allclose(affine, phantom_affine((36, 44, 34), 4.0))
    assert set(maps) == {"T1w", "FA", "MD", "AD", "RD"}
    for key in ("FA", "MD", "AD", "RD"):
        written, _ = load_nifti(paths[0] / f"{key}.nii.gz", ndim=3)
        np.testing.assert_allclose(maps[key], written, atol=1e-5, err_msg=key)
    labels, _ = load_nifti(paths[0] / "aparc+aseg.nii.gz", ndim=3, dtype=np.int32)
    wm = np.isin(labels, (2, 41))
    assert 0.6 < maps["MD"][wm].mean() < 0.85  # um^2/ms


def test_rerun_resumes_and_regenerates_the_same_subject(cohort, tmp_path):
    out, paths = cohort
    import shutil

    first = load_nifti(paths[1] / "data.nii.gz", dtype=np.int16)[0]
    mtime0 = (paths[0] / "data.nii.gz").stat().st_mtime_ns
    shutil.rmtree(paths[1])
    again = simulate_dti_cohort(out, subjects=2, seed=3, preset="literature", **SMALL)
    assert (again[0] / "data.nii.gz").stat().st_mtime_ns == mtime0  # kept, not rewritten
    np.testing.assert_array_equal(load_nifti(again[1] / "data.nii.gz", dtype=np.int16)[0], first)


def test_hcp_scheme_subject_is_fitted_from_b0_and_b1000(tmp_path):
    params = {
        **SMALL,
        "scheme": "hcp",
        "hcp": {
            "n_b0": 3,
            "b0_stored": 5.0,
            "shells": [1000.0, 2000.0, 3000.0],
            "n_dirs": 12,
            "jitter": 15.0,
        },
    }
    (path,) = simulate_dti_cohort(tmp_path, subjects=1, **params)
    bvals, _ = read_bvals_bvecs(path / "bvals", path / "bvecs")
    assert bvals.size == 39 and np.sum(bvals == 5) == 3
    assert json.loads((path / "simulation.json").read_text())["fit_volumes"] == 15
    maps, _ = dwi_feature_maps(path)
    written, _ = load_nifti(path / "MD.nii.gz", ndim=3)
    np.testing.assert_allclose(maps["MD"], written, atol=1e-5)


def test_cli_writes_a_cohort(tmp_path, capsys):
    paths = main(
        [
            "--out",
            str(tmp_path),
            "--subjects",
            "1",
            "--preset",
            "lecture",
            "--shape",
            "28",
            "34",
            "26",
            "--voxel-mm",
            "5.5",
            "--snr",
            "20",
        ]
    )
    assert (paths[0] / "data.nii.gz").is_file()
    record = json.loads((paths[0] / "simulation.json").read_text())
    assert record["preset"] == "lecture" and record["params"]["snr"] == 20.0
    assert "1 subjects" in capsys.readouterr().out


def test_progress_bar_counts_subjects_and_estimates_the_rest():
    """The first run's bar: on stderr, a line per subject off a terminal, the time left from
    the subjects done so far."""
    import io

    from mrinet.sim.dti_dataset import CohortProgress

    stream = io.StringIO()
    bar = CohortProgress(4, stream=stream, width=8)
    bar.start -= 10.0  # as if the first subject took 10 s
    bar.step()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("simulating DTI cohort [........] 0/4 subjects")
    assert "[##......] 1/4 subjects, 10 s, ~30 s left" in lines[1]
    for _ in range(3):
        bar.step()
    assert stream.getvalue().splitlines()[-1].endswith("4/4 subjects, 10 s, done")


def test_simulation_json_records_cpu_seconds_per_stage(cohort):
    _, paths = cohort
    cpu = json.loads((paths[0] / "simulation.json").read_text())["cpu_seconds"]
    assert {"signal", "noise", "tensor fit", "write DWI"} <= set(cpu)
    assert all(sec >= 0 for sec in cpu.values()) and sum(cpu.values()) > 0


def test_cohort_verified_once_per_process_until_a_file_changes(tmp_path, monkeypatch):
    """A run asks for the cohort several times: its SHA-1s are checked once per process, and
    again as soon as any file changes (a same-size corruption is still found)."""
    import mrinet.io.integrity as integrity
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    params = {"subjects": 1, "seed": 3, "preset": "literature", **SMALL}
    target = ensure_synthetic_cohort(tmp_path, params)
    hashed = []
    original = integrity.file_sha1
    monkeypatch.setattr(integrity, "file_sha1", lambda p: hashed.append(p) or original(p))
    ensure_synthetic_cohort(tmp_path, params)
    assert hashed == []  # written and hashed by this process: not read again
    fa = target / "sub-000" / "FA.nii.gz"
    data = bytearray(fa.read_bytes())
    data[-10:] = bytes(10)  # same size, different bytes
    fa.write_bytes(bytes(data))
    ensure_synthetic_cohort(tmp_path, params)
    assert hashed  # the change was seen, the cohort verified again ...
    assert fa.read_bytes() != bytes(data)  # ... and the corrupt subject simulated again
