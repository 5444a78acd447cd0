"""Fixtures of the reliability suite: tiny NIfTI cohorts and one shared tiny DTI run
(the helpers they use are in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import QUIET, subject_maps, write_nifti_subjects


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
