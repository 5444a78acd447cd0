"""The DTI measurement scripts run on the tiny cohort and report Dice (scikit-learn: test extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradient_boosting_ceiling_prints_dice_per_class(data_dir, capsys):
    pytest.importorskip("sklearn")
    result = _load("dti_baseline").main(
        ["data_size=tiny", f"paths.data_dir={data_dir}", "--max-iter", "5", "--max-train", "5000"]
    )
    assert 0.0 <= result["test/dice_macro"] <= 1.0 and len(result["offsets"]) == 3
    out = capsys.readouterr().out
    assert "gradient boosting, tuned on val" in out and "corpus_callosum" in out
