"""The DTI experiments on the default simulated cohort land in their measured Dice bands.

Figures on the anatomical cohort (issue 27, docs/tissue_maps.md "Real anatomy"): dti_mlp test
macro Dice ~0.56-0.58 (thalamus ~0.25-0.33: partial-volume white matter looks like thalamus;
corpus callosum ~0.46: FreeSurfer's midline slab cannot be told from the callosal white matter
beside it by DTI values; gradient boosting lands at the same place), dti_mlp_context ~0.94
(thalamus ~0.95, corpus callosum ~0.88), dti_unet: the issue's target, macro >= 0.92, every
class >= 0.85.
"""

from __future__ import annotations

import json

import pytest


def _train(tmp_path, data_dir, cli, experiment: str, threads: int = 1) -> dict:
    run_dir = tmp_path / "run"
    proc = cli(
        "mrinet.train",
        f"experiment={experiment}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "extras.print_config=false",
        f"extras.num_threads={threads}",
        "callbacks.progress_bar.kind=none",
        cwd=tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())["test"]


@pytest.mark.slow
def test_dti_mlp_default_dice_band(tmp_path, data_dir, cli):
    """Voxel-only: WM ~0.97, thalamus ~0.25-0.33, the midline callosum barely separable."""
    test = _train(tmp_path, data_dir, cli, "dti_mlp")
    assert 0.50 <= test["test/dice_macro"] <= 0.66, test
    assert test["test/dice_cortical_wm"] >= 0.94 and test["test/dice_thalamus"] >= 0.18, test
    assert test["test/acc"] >= 0.92, test


@pytest.mark.slow
def test_dti_mlp_context_separates_the_midline_callosum(tmp_path, data_dir, cli):
    test = _train(tmp_path, data_dir, cli, "dti_mlp_context")
    assert test["test/dice_macro"] >= 0.85, test
    assert test["test/dice_corpus_callosum"] >= 0.70 and test["test/dice_thalamus"] >= 0.85, test


@pytest.mark.slow
def test_dti_unet_meets_the_segmentation_target(tmp_path, data_dir, cli):
    """The 3-D U-Net (~7 min on 2 cores): macro Dice >= 0.92 with every class >= 0.85."""
    test = _train(tmp_path, data_dir, cli, "dti_unet", threads=2)
    assert test["test/dice_macro"] >= 0.92, test
    for name in ("thalamus", "corpus_callosum", "cortical_wm"):
        assert test[f"test/dice_{name}"] >= 0.85, test
