"""A full disk: one clear error naming the file, the previous output intact under its name, no
temporary left, and the same command succeeds once there is space again.

Real faults: each test mounts a small tmpfs (root, as in CI; skipped with the reason
elsewhere), puts the run dir, cache or output on it and fills it with a filler file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import LABEL_MAP, assert_clear, compose, fill, guarded_run
from tests.helpers import TINY_COHORT as TINY


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of `size` under tmp_path (unmounted afterwards)."""
    mounted = []

    def mount(size: str = "3m") -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            pytest.skip(f"needs root to mount a tmpfs (CI runs as root): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(".tmp")]


def test_a_full_disk_during_checkpointing_keeps_the_last_checkpoint_and_resumes(
    tiny_dti_run, tmpfs, capsys
):
    point = tmpfs("3m")
    run = point / "run"
    shutil.copytree(tiny_dti_run["run"] / "checkpoints", run / "checkpoints")
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    overrides = [
        *tiny_dti_run["overrides"],
        "logger=csv",
        f"ckpt_path={last}",
        "trainer.max_epochs=3",
        f"paths.output_dir={run}",
        f"paths.root_dir={point}",
    ]
    filler = fill(point, len(before) // 2)  # the metrics fit, the next checkpoint does not
    err = guarded_run("train", overrides, capsys)
    assert_clear(err, "DiskFullError", "no space left on device", str(point), "free space")
    assert last.read_bytes() == before  # the previous checkpoint, whole, under its name
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert not temporaries(point), temporaries(point)
    filler.unlink()
    from mrinet.train import train

    _, objects = train(compose("train", overrides))
    assert objects["trainer"].current_epoch == 3
    assert torch.load(last, weights_only=True)["epoch"] == 2 and not temporaries(point)


def test_a_full_disk_while_writing_the_voxel_cache_is_named_and_the_rerun_builds_it(
    tmpfs, tmp_path
):
    from mrinet.data.tissue.voxel_module import DTIDataModule
    from mrinet.errors import DiskFullError

    point = tmpfs("16m")
    kwargs = {"source": "synthetic", "cache_dir": str(point), "synthetic": TINY,
              "label_map": LABEL_MAP, "split": [0.5, 0.5, 0.0]}  # fmt: skip
    # the cohort fits; then the disk is full when the voxel cache is written
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    root = ensure_synthetic_cohort(point, TINY)
    filler = fill(point, 4096)
    with pytest.raises(DiskFullError) as raised:
        DTIDataModule(**kwargs).load_voxels()
    text = str(raised.value)
    assert "no space left on device" in text and ".voxels-" in text and "fix:" in text
    assert not list(root.glob(".voxels-*")) and not temporaries(point)
    filler.unlink()
    voxels = DTIDataModule(**kwargs).load_voxels()
    (cache,) = root.glob(".voxels-*.npz")
    assert len(voxels.labels) and cache.stat().st_size > 0
    np.testing.assert_array_equal(DTIDataModule(**kwargs).load_voxels().labels, voxels.labels)


def test_a_full_disk_while_simulating_the_cohort_resumes_with_the_missing_subjects(tmpfs):
    from mrinet.errors import DiskFullError
    from mrinet.io.integrity import MANIFEST
    from mrinet.sim.dti_cache import ensure_synthetic_cohort

    point = tmpfs("16m")
    root = ensure_synthetic_cohort(point / "probe", TINY)  # how big one subject is
    one = sum(p.stat().st_size for p in (root / "sub-000").rglob("*") if p.is_file())
    shutil.rmtree(point / "probe")
    filler = fill(point, int(one * 1.5))  # room for one subject, not two
    with pytest.raises(DiskFullError, match="no space left on device"):
        ensure_synthetic_cohort(point / "cache", TINY)
    root = next((point / "cache").iterdir())
    assert [p.name for p in root.glob("sub-*")] == ["sub-000"] and not temporaries(point)
    assert not (root / MANIFEST).exists()
    filler.unlink()
    assert ensure_synthetic_cohort(point / "cache", TINY) == root
    assert len(list(root.glob("sub-*"))) == 2 and (root / MANIFEST).is_file()


def test_a_full_disk_during_prediction_keeps_the_previous_maps(tiny_dti_run, tmpfs, capsys):
    from mrinet.predict import predict

    point = tmpfs("2m")
    out = point / "pred" / "p.nii.gz"
    overrides = [
        f"ckpt_path={tiny_dti_run['ckpt']}",
        f"input={tiny_dti_run['subjects'] / 'sub-0'}",
        f"output={out}",
        f"paths.output_dir={point / 'o'}",
        f"paths.root_dir={point / 'o'}",
    ]
    predict(compose("predict", overrides))
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    out.unlink()  # the class map is to be redone; its probabilities and Dice stay
    filler = fill(point, 256)
    err = guarded_run("predict", overrides, capsys)
    assert_clear(err, "DiskFullError", "no space left on device", str(out.parent))
    after = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert after == {k: v for k, v in before.items() if k != out.name}  # the others intact
    assert not temporaries(point)
    filler.unlink()
    predict(compose("predict", overrides))
    assert out.read_bytes() == before[out.name]


def test_a_full_disk_while_simulating_kspace_is_named_and_rerun_completes(tmpfs):
    from mrinet.errors import DiskFullError
    from mrinet.sim.recon_cache import ensure_synthetic_recon, synthetic_recon_dir

    params = {"simulation": {"volumes": 3, "slices": 1, "coils": 2, "size": 64,
                             "progress": False}}  # fmt: skip
    point = tmpfs("2m")
    filler = fill(point, 40_000)
    with pytest.raises(DiskFullError) as raised:
        ensure_synthetic_recon(point, params)
    assert "no space left on device" in str(raised.value) and ".h5" in str(raised.value)
    target = synthetic_recon_dir(point, params)
    assert not target.exists() and not temporaries(point)
    filler.unlink()
    assert ensure_synthetic_recon(point, params) == target / "recon"
    assert len(list((target / "kspace").glob("*.h5"))) == 3


def test_a_full_disk_while_writing_metrics_json_names_it_and_keeps_the_old_one(tmp_path, tmpfs):
    from mrinet.errors import DiskFullError
    from mrinet.run.entry import write_json

    point = tmpfs("1m")
    path = write_json(point / "metrics.json", {"test": {"acc": 0.5}})
    before = path.read_bytes()
    fill(point, 0)
    with pytest.raises(DiskFullError) as raised:
        write_json(path, {"test": {"acc": 0.7}, "pad": "x" * 100_000})
    assert str(path) in str(raised.value) and "bytes" in str(raised.value)
    assert path.read_bytes() == before and not temporaries(point)


def test_quiet_full_disk_error_from_a_writer_thread_is_one_message(tmpfs, capsys):
    """TensorBoard's writer thread hitting ENOSPC: the run ends with one DiskFullError naming
    the event file (not a thread traceback, and not a run that silently logs nothing)."""
    from torch.utils.tensorboard import SummaryWriter

    from mrinet.run.entry import guarded

    point = tmpfs("1m")
    fill(point, 0)

    def task(cfg):
        writer = SummaryWriter(str(point / "tb"))
        for step in range(1000):
            writer.add_scalar("x", step, step)
            writer.flush()

    with pytest.raises(SystemExit):
        guarded(task)({})
    err = capsys.readouterr().err
    assert_clear(err, "no space left on device", str(point / "tb" / "events.out.tfevents"))
