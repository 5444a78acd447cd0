"""Folders a run cannot write (a read-only mount, a file where a folder should be) are refused
before anything starts, naming the config key; nothing is created.

Root ignores permission bits, so "read-only" here is a real read-only tmpfs mount (skipped
with the reason where the test cannot mount one).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import QUIET, assert_clear, fill, guarded_run


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs under tmp_path (unmounted afterwards)."""
    point = tmp_path / "ro"
    point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        pytest.skip(f"needs root to mount a read-only tmpfs (CI runs as root): {proc.stderr}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def compose_with_hydra(entry: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=entry, overrides=overrides, return_hydra_config=True)


def test_a_read_only_mount_is_refused_naming_the_key(read_only):
    from mrinet.errors import ConfigError
    from mrinet.run.preflight import check_writable_dir

    with pytest.raises(ConfigError, match="read-only") as raised:
        check_writable_dir(read_only / "logs" / "run", "paths.log_dir")
    assert "paths.log_dir=" in str(raised.value) and "fix:" in str(raised.value)


def test_a_file_where_a_folder_should_be_is_refused(tmp_path):
    from mrinet.errors import ConfigError
    from mrinet.run.preflight import check_writable_dir

    (tmp_path / "logs").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_writable_dir(tmp_path / "logs" / "train", "paths.log_dir")


def test_a_missing_folder_under_a_writable_one_is_fine_and_not_created(tmp_path):
    from mrinet.run.preflight import check_writable_dir

    check_writable_dir(tmp_path / "a" / "b", "hydra.run.dir")
    assert not (tmp_path / "a").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("entry", "override", "key"),
    [
        ("train", "paths.log_dir={ro}/logs", "paths.log_dir"),
        ("train", "hydra.run.dir={ro}/run", "hydra.run.dir"),
        ("train", "paths.data_dir={ro}/data", "paths.data_dir"),
        ("eval", "hydra.run.dir={ro}/eval", "hydra.run.dir"),
    ],
)
def test_the_hydra_callback_refuses_before_the_run_dir_is_made(
    read_only, tmp_path, capsys, entry, override, key
):
    from mrinet.run.preflight import CheckOutputDirs

    others = [f"paths.root_dir={tmp_path}"] + (["ckpt_path=x.ckpt"] if entry == "eval" else [])
    cfg = compose_with_hydra(entry, [*others, override.format(ro=read_only)])
    with pytest.raises(SystemExit) as exit_info:
        CheckOutputDirs().on_run_start(config=cfg)
    assert exit_info.value.code == 1
    assert_clear(capsys.readouterr().err, f"{key}=", "read-only", "ConfigError")


def test_sweeps_check_their_sweep_dir(tmp_path, capsys):
    from mrinet.run.preflight import CheckOutputDirs

    (tmp_path / "file").write_text("x")
    cfg = compose_with_hydra(
        "train", [f"paths.root_dir={tmp_path}", f"paths.log_dir={tmp_path}/file"]
    )
    with pytest.raises(SystemExit):
        CheckOutputDirs().on_multirun_start(config=cfg)
    assert_clear(capsys.readouterr().err, "paths.log_dir=", "is a file")


def test_train_cli_on_a_read_only_log_dir_exits_1_with_the_key(read_only, tmp_path, cli):
    proc = cli("mrinet.train", f"paths.log_dir={read_only}/logs", *QUIET, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert_clear(proc.stderr, "paths.log_dir=", "read-only")
    assert list(read_only.iterdir()) == []


def test_predict_into_a_read_only_folder_is_refused_before_loading(read_only, tmp_path, capsys):
    subject = tmp_path / "sub"
    subject.mkdir()
    err = guarded_run(
        "predict",
        [
            f"ckpt_path={tmp_path / 'missing.ckpt'}",  # refused before the checkpoint is read
            f"input={subject}",
            f"output={read_only / 'maps' / 'p.nii.gz'}",
            f"paths.output_dir={tmp_path / 'o'}",
            f"paths.root_dir={tmp_path / 'o'}",
        ],
        capsys,
    )
    assert_clear(err, "output=", "read-only")


def test_a_device_already_full_is_refused_up_front(tmp_path, capsys):
    """Hydra writes the run's .hydra/ before mrinet's code runs: a full device is said before
    that, as one DiskFullError (not Hydra's traceback)."""

    point = tmp_path / "full"
    point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True
    )
    if proc.returncode:
        pytest.skip("needs root to mount a tmpfs (CI runs as root)")
    try:
        fill(point, 4096)
        from mrinet.run.preflight import CheckOutputDirs

        cfg = compose_with_hydra(
            "train", [f"paths.root_dir={tmp_path}", f"paths.log_dir={point}/logs"]
        )
        with pytest.raises(SystemExit):
            CheckOutputDirs().on_run_start(config=cfg)
        assert_clear(capsys.readouterr().err, "DiskFullError", "no space left on device", point)
        assert sorted(p.name for p in point.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
