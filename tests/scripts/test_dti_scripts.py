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


def test_tissue_map_render_keeps_the_logged_png_or_makes_a_small_one(tmp_path):
    """The logged image comes back byte for byte; --width/--colors give a smaller palette PNG
    of the same picture (the docs' before/after maps)."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    picture = np.zeros((3, 120, 160), dtype=np.float32)
    picture[0, 20:60, 20:70] = 0.9  # label colours on grey noise, like a tissue map
    picture[2, 70:100, 90:150] = 0.8
    picture += 0.3 * rng.random((1, 120, 160), dtype=np.float32)
    with SummaryWriter(str(tmp_path / "run" / "tensorboard")) as writer:
        writer.add_image("val/tissue_maps", torch.from_numpy(picture.clip(0, 1)), global_step=7)
    render = _load("render_tissue_map")
    full = render.main([str(tmp_path / "run"), str(tmp_path / "full.png")]).read_bytes()
    logged = render.logged_images(tmp_path / "run", "val/tissue_maps")
    assert [step for step, _ in logged] == [7] and full == logged[0][1]
    small = render.main(
        [str(tmp_path / "run"), str(tmp_path / "small.png"), "--width", "80", "--colors", "32"]
    )
    image = Image.open(io.BytesIO(small.read_bytes()))
    assert image.size == (80, 60) and image.mode == "P"
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    red = rgb[15:25, 15:30]  # the red block, halved
    assert red[..., 0].mean() > 0.8 and red[..., 2].mean() < 0.4
    with pytest.raises(SystemExit, match="no image tagged"):
        render.main([str(tmp_path / "run"), str(tmp_path / "x.png"), "--tag", "val/other"])
