"""Shared helpers for the reliability tests: in-process guarded entry points, tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHAPE = (6, 5, 4)
LABEL_MAP = {
    "thalamus": [10, 49],
    "corpus_callosum": [251, 252, 253, 254, 255],
    "cortical_wm": [2, 41],
}
FEATURES = ["T1w", "FA", "MD", "AD", "RD"]
QUIET = ["extras.print_config=false", "callbacks.progress_bar.kind=none"]


def subject_maps(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Plausible maps (MD/AD/RD in um^2/ms) and labels holding every class."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 10, 49, 251, 255, 2, 41, 3], size=SHAPE)
    labels.flat[:3] = [10, 251, 2]
    maps = {
        "T1w": rng.uniform(800, 1000, SHAPE),
        "FA": rng.uniform(0.1, 0.9, SHAPE),
        "MD": rng.uniform(0.5, 1.2, SHAPE),
        "AD": rng.uniform(0.8, 1.8, SHAPE),
        "RD": rng.uniform(0.2, 0.9, SHAPE),
    }
    return maps, labels


def write_nifti_subjects(folder: Path, n: int = 4) -> None:
    """`n` subject folders (maps + aparc+aseg NIfTI, 2 mm) of `subject_maps` under `folder`."""
    from mrinet.io.nifti import save_nifti

    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    for s in range(n):
        maps, labels = subject_maps(s)
        for name, values in maps.items():
            save_nifti(folder / f"sub-{s}" / f"{name}.nii.gz", values, affine, np.float32)
        save_nifti(folder / f"sub-{s}" / "aparc+aseg.nii.gz", labels, affine, np.int32)


def guarded_run(entry: str, overrides: list[str], capsys) -> str:
    """Run an entry point's task in-process as its CLI does (composed config, guarded);
    asserts exit code 1 and returns what the user sees on stderr."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import guarded, register_resolvers

    register_resolvers()
    module = __import__(f"mrinet.{entry}", fromlist=["x"])
    task = {"train": "train", "eval": "evaluate", "predict": "predict"}[entry]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=entry, overrides=overrides)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        guarded(getattr(module, task))(cfg)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def assert_clear(err: str, *needles: str) -> None:
    """One mrinet message naming the problem, the place and a fix; no library traceback."""
    assert "mrinet:" in err and "fix:" in err, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in err, (needle, err)


@pytest.fixture
def paths_for(tmp_path):
    """Hydra output/log paths inside the test's tmp dir."""

    def make(name: str = "out") -> list[str]:
        out = tmp_path / name
        return [f"paths.output_dir={out}", f"paths.root_dir={out}", f"paths.data_dir={out}/data"]

    return make


@pytest.fixture
def cohort(tmp_path, write_subject) -> Path:
    """Four good NIfTI subject folders (tiny grid) that train as they are."""
    root = tmp_path / "subjects"
    for s in range(4):
        maps, labels = subject_maps(s)
        write_subject(root / f"sub-{s}", maps, labels)
    return root


@pytest.fixture(scope="session")
def tiny_dti_run(tmp_path_factory) -> dict:
    """ONE tiny DTI MLP run (NIfTI subjects, one epoch, in-process) shared by the suites that
    need a real checkpoint: its work dir, subjects, best.ckpt and the overrides that made it."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers
    from mrinet.train import train

    work = tmp_path_factory.mktemp("tiny-dti")
    write_nifti_subjects(work / "subjects")
    overrides = [
        "experiment=dti_mlp",
        "data.source=nifti",
        f"data.subjects_dir={work / 'subjects'}",
        "data.split=[0.5,0.25,0.25]",
        "trainer.max_epochs=1",
        "extras.num_threads=1",
        *QUIET,
    ]
    out = work / "run"
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[*overrides, f"paths.output_dir={out}", f"paths.root_dir={out}"],
        )
    train(cfg)
    return {
        "work": work,
        "subjects": work / "subjects",
        "run": out,
        "ckpt": out / "checkpoints" / "best.ckpt",
        "overrides": overrides,
    }
