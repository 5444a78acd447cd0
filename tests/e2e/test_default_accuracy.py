"""The default DTI experiment on the default simulated cohort lands in its expected accuracy band."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_dti_mlp_default_reaches_about_0p9_never_1(tmp_path, data_dir, cli):
    """Literature preset, 8 subjects, partial volume: an MLP should reach ~0.9, never 1.0."""
    run_dir = tmp_path / "run"
    proc = cli(
        "mrinet.train",
        "experiment=dti_mlp",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "extras.print_config=false",
        "extras.num_threads=1",
        "callbacks.progress_bar.kind=none",
        cwd=tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert 0.80 <= test["test/bal_acc"] <= 0.98, test
    assert 0.80 <= test["test/acc"] <= 0.98, test
