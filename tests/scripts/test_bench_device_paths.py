"""Benchmarks 1 and 3 (issue 8) run their device paths: batched PI-CS and training on a device.

On a CPU-only machine the batched PI-CS path and `--device cpu` training run at tiny sizes;
the CUDA variants run wherever a GPU is visible (skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]


def _script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    module_name = f"_bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The benchmarks set torch's thread count (--threads): restore it for the other tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


TINY_PICS = ["--size", "64", "--coils", "4", "--iterations", "3", "--repeats", "1"]


@pytest.mark.parametrize("device", DEVICES)
def test_bench_pics_batched_equals_single_slice_output(device, capsys):
    pytest.importorskip("sigpy")
    result = _script("bench_pics").run([*TINY_PICS, "--batch", "3", "--device", device])
    b = result.batched
    assert b is not None and b.batch == 3 and b.device.startswith(device)
    assert b.max_rel_diff < 1e-5, f"batched output differs from one slice by {b.max_rel_diff}"
    assert b.slices_per_s > 0 and math.isfinite(b.slices_per_s)
    assert result.ratio > 0 and math.isfinite(result.ratio)
    assert result.ratio == pytest.approx(b.slices_per_s * result.mrinet_wall_s)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("speed ratio batched") and last.endswith(f"{result.ratio:.2f}x")


def test_bench_pics_default_mode_has_no_batched_part(capsys):
    pytest.importorskip("sigpy")
    result = _script("bench_pics").run(TINY_PICS)
    assert result.batched is None and result.ratio == result.cpu_ratio > 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("speed ratio sigpy/mrinet per slice")


@pytest.mark.parametrize(("device", "accelerator"), [("cpu", "cpu"), ("cuda", "gpu")])
def test_train_throughput_overrides_pick_the_trainer(tmp_path, device, accelerator):
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    bench = _script("bench_train_throughput")
    register_resolvers()
    overrides = bench.run_overrides(tmp_path / "v.parquet", 256, 2, tmp_path, device)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.trainer.accelerator == accelerator and cfg.trainer.devices == 1
    assert cfg.trainer.max_epochs == 2 and cfg.data.batch_size == 256
    assert cfg.model.steps_per_batch == 32  # still experiment=dti_mlp


@pytest.mark.parametrize("device", DEVICES)
def test_bench_train_throughput_runs_on_the_device(device, capsys):
    argv = ["--voxels", "20000", "--epochs", "2", "--batch-sizes", "256", "--device", device]
    ratios = _script("bench_train_throughput").main(argv)
    assert list(ratios) == [256]
    assert ratios[256] > 0 and math.isfinite(ratios[256])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("ratio mrinet/hand") and last.endswith(f"{ratios[256]:.2f}x")


def test_bench_pics_lam_study_reports_sigpy_best_mrinet_best_and_auto_per_case(capsys):
    pytest.importorskip("sigpy")
    pytest.importorskip("dipy")
    argv = ["--lam-study", "--size", "96", "--coils", "4", "--iterations", "5", "--noise", "0.01"]
    result = _script("bench_pics").run([*argv, "--volume-slices", "2", "--volume-repeats", "1"])
    rows = result.lam_rows
    assert [r.image.split()[0] for r in rows] == ["T1", "b0"]  # two contrasts, real images
    for r in rows:
        assert r.mrinet_best_psnr >= r.auto_psnr - 1e-6  # the grid's best bounds auto from above
        assert r.sigpy_s > 0 and r.mrinet_s > 0 and r.auto_s > 0
    assert result.ratio == pytest.approx(min(r.auto_psnr - r.mrinet_best_psnr for r in rows))
    out = capsys.readouterr().out
    assert out.count("| T1 (DIPY coronal) |") == 1 and "no GPU" in out
    vol = result.volume_rows
    assert [v.slices for v in vol] == [1, 2]  # the slice of most signal alone, then the volume
    for v in vol:
        assert v.fixed_s > 0 and v.auto_s > 0 and v.ratio > 0
        assert v.psnr_auto == pytest.approx(v.psnr_fixed, abs=1e-4)  # same lam, same solve
    assert "| b0 volume (DIPY S0) |" in out


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_whole_epoch_overrides_on_a_gpu_pick_trainer_gpu_and_the_precision(tmp_path, precision):
    """`make bench-gpu`'s whole-epoch runs: trainer=gpu and trainer.precision reach the config,
    and the hand loop reads the same precision for its autocast."""
    from hydra import compose, initialize_config_dir

    from mrinet.run.config_dir import config_dir
    from mrinet.run.entry import register_resolvers

    bench = _script("bench_train_throughput")
    register_resolvers()
    overrides = bench.experiment_overrides(
        "dti_mlp", tmp_path / "v.parquet", tmp_path, 4096, "cuda", precision
    )
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == precision
    want = torch.bfloat16 if precision == "bf16-mixed" else None
    assert bench._precision_dtype(overrides) == want


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_whole_epochs_run_in_bf16(device, capsys):
    """The whole-epoch comparison under bf16-mixed (CPU autocast here, the GPU's where one is
    visible): both loops run, every ratio is finite and printed last."""
    args = ["--experiments", "dti_mlp", "--voxels", "20000", "--epochs", "2", "--repeats", "1"]
    ratios = _script("bench_train_throughput").main(
        [*args, "--precision", "bf16-mixed", "--device", device]
    )
    assert all(math.isfinite(r) and r > 0 for r in ratios["dti_mlp"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("whole-epoch ratio hand/mrinet dti_mlp") and "CPU time" in last
