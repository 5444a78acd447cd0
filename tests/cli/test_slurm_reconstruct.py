"""mrinet-slurm-reconstruct without a cluster: options checked before anything is submitted,
and the array task (`run_shard`) writes exactly what one process writes. The real SLURM run
is tests/slurm/test_reconstruct_array.py."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mrinet.cli.slurm_reconstruct import main, parse
from mrinet.errors import ConfigError
from mrinet.recon import reconstruct_dataset
from mrinet.sim.kspace_dataset import simulate_kspace_dataset
from mrinet.slurm.reconstruct_array import run_shard

SETTINGS = {"method": "zero_filled", "center_fraction": 0.125, "acceleration": 4}


def test_reconstruction_options_are_parsed_after_the_double_dash():
    own, recon = parse(["--shards", "3", "--", "--kspace", "K", "--out", "O", "--method", "sense"])
    assert own.shards == 3 and recon.kspace == "K" and recon.method == "sense"
    with pytest.raises(SystemExit):
        parse(["--shards", "3", "--", "--out", "O"])  # no --kspace


def test_a_bad_reconstruction_setting_fails_before_any_submission(tmp_path):
    # 0.3 x 4 > 1: impossible; refused here, before sinfo/sbatch are looked for
    args = ["--shards", "2", "--", "--kspace", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(
        ConfigError, match=r"center_fraction 0\.3 with acceleration 4 is impossible"
    ):
        main([*args, "--center-fraction", "0.3"])
    with pytest.raises(ConfigError, match="--shards 0"):
        main(["--shards", "0", *args[2:]])


def test_the_shards_together_write_what_one_process_writes(tmp_path):
    kspace = tmp_path / "kspace"
    simulate_kspace_dataset(kspace, volumes=3, slices=1, coils=2, size=64, progress=False)
    one = reconstruct_dataset(kspace, tmp_path / "one", progress=False, **SETTINGS)
    counts = [run_shard(str(kspace), str(tmp_path / "array"), SETTINGS, f"{i}/2") for i in (0, 1)]
    assert counts == [{"reference": 2, "zero_filled_R4": 2}, {"reference": 1, "zero_filled_R4": 1}]
    for tag, paths in one.items():
        for path in paths:
            with h5py.File(path) as a, h5py.File(tmp_path / "array" / tag / path.name) as b:
                np.testing.assert_array_equal(a["reconstruction"][()], b["reconstruction"][()])
