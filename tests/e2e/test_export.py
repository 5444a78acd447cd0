"""End to end: python -m mrinet.export of a tiny DTI MLP and a tiny recon-quality CNN, both
formats, run with onnxruntime / torch.jit and compared with mrinet.predict and mrinet.eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import (
    TINY_CNN,
    eval_test_metrics,
    train_run,
    write_ghosted_reconstructions,
)

onnxruntime = pytest.importorskip("onnxruntime", reason="pip install 'mrinet[export]'")
pytest.importorskip("onnxscript", reason="pip install 'mrinet[export]'")

TINY_MLP = [
    "experiment=dti_mlp",
    "data_size=tiny",
    "trainer.max_epochs=2",
    "extras.print_config=false",
    "extras.num_threads=1",
    "callbacks.progress_bar.kind=none",
]
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


def export(cli, ckpt: Path, fmt: str, output: Path, cwd: Path):
    """`python -m mrinet.export` as a user runs it; returns the CompletedProcess."""
    return cli(
        "mrinet.export",
        f"ckpt_path={ckpt}",
        f"format={fmt}",
        f"output={output}",
        f"hydra.run.dir={cwd / 'export-run'}",
        "extras.num_threads=1",
        cwd=cwd,
    )


def run_file(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and classes of an exported file, run outside mrinet."""
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["inputs"]
        proba, classes = session.run(["probabilities", "classes"], {"inputs": x})
        return proba, classes
    loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        proba, classes = loaded(torch.from_numpy(x))
    return proba.numpy(), classes.numpy()


def exported_files(cli, run_dir: Path, work: Path) -> dict[str, Path]:
    out = {}
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    for fmt, name in FORMATS.items():
        path = work / "exported" / name
        proc = export(cli, ckpt, fmt, path, work)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert path.is_file() and path.with_name(name + ".json").is_file()
        out[fmt] = path
    return out


@pytest.fixture(scope="module")
def mlp(tmp_path_factory, data_dir, cli):
    work = tmp_path_factory.mktemp("export-mlp")
    run_dir = work / "run"
    train_run(cli, *TINY_MLP, run_dir=run_dir, data_dir=data_dir, cwd=work)
    return {"dir": run_dir, "work": work, "files": exported_files(cli, run_dir, work)}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, data_dir, cli):
    work = tmp_path_factory.mktemp("export-cnn")
    recon_dir = write_ghosted_reconstructions(work / "recon")
    run_dir = work / "run"
    overrides = [*TINY_CNN, "trainer.max_epochs=2", f"data.recon_dir={recon_dir}"]
    train_run(cli, *overrides, run_dir=run_dir, data_dir=data_dir, cwd=work)
    return {"dir": run_dir, "work": work, "files": exported_files(cli, run_dir, work)}


@pytest.mark.e2e
def test_mlp_export_equals_predict_on_a_subject(mlp, data_dir, cli):
    import nibabel as nib

    subject = sorted((data_dir / "dti_synthetic").glob("*/sub-*"))[0]
    out = mlp["work"] / "pred" / "tissue.nii.gz"
    proc = cli(
        "mrinet.predict",
        f"ckpt_path={mlp['dir'] / 'checkpoints' / 'best.ckpt'}",
        f"input={subject}",
        f"output={out}",
        "mask=labels",
        f"hydra.run.dir={mlp['work'] / 'predict'}",
        cwd=mlp["work"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tissue = np.asarray(nib.load(out).dataobj)
    proba = np.asarray(nib.load(out.with_name("tissue_proba.nii.gz")).dataobj)
    keep = tissue > 0
    for fmt, path in mlp["files"].items():
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        assert meta["inputs"]["kind"] == "voxels" and meta["decision"] == "tuned"
        assert meta["classes"] == ["thalamus", "corpus_callosum", "cortical_wm"]
        # the raw maps of the subject folder, in the order the metadata names them
        x = np.stack(
            [
                np.asarray(nib.load(subject / f"{f}.nii.gz").dataobj)[keep]
                for f in meta["inputs"]["columns"]
            ],
            axis=1,
        ).astype(np.float32)
        got_p, got_c = run_file(path, x)
        np.testing.assert_allclose(got_p, proba[keep], atol=1e-5, rtol=0, err_msg=fmt)
        np.testing.assert_array_equal(got_c + 1, tissue[keep], err_msg=fmt)


@pytest.mark.e2e
def test_mlp_export_equals_eval_on_the_test_split(mlp, cli):
    from mrinet.run.checkpoints import build_model, checkpoint_datamodule, load_checkpoint

    _, evaluated = eval_test_metrics(cli, mlp["dir"], mlp["work"] / "eval", mlp["work"])
    checkpoint = load_checkpoint(mlp["dir"] / "checkpoints" / "best.ckpt")
    model = build_model(checkpoint)
    datamodule = checkpoint_datamodule(checkpoint)
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    with torch.inference_mode():
        want_p = model.predict_proba(x).numpy()
        want_c = model.predict_classes(x).numpy()
    for fmt, path in mlp["files"].items():
        got_p, got_c = run_file(path, x.numpy())
        np.testing.assert_allclose(got_p, want_p, atol=1e-5, rtol=0, err_msg=fmt)
        np.testing.assert_array_equal(got_c, want_c, err_msg=fmt)
        accuracy = float((got_c == y.numpy()).mean())
        assert accuracy == pytest.approx(evaluated["test/acc"], abs=1e-6), fmt


@pytest.mark.e2e
def test_cnn_export_takes_raw_images_and_equals_eval(cnn, cli):
    from omegaconf import OmegaConf

    from mrinet.run.checkpoints import build_model, checkpoint_datamodule, load_checkpoint

    _, evaluated = eval_test_metrics(cli, cnn["dir"], cnn["work"] / "eval", cnn["work"])
    checkpoint = load_checkpoint(cnn["dir"] / "checkpoints" / "best.ckpt")
    model = build_model(checkpoint)
    assert checkpoint["mrinet"]["data"]["normalization"] == "percentile"
    pipeline = checkpoint_datamodule(checkpoint)  # what eval feeds the net: normalised images
    pipeline.setup("test")
    images, labels = pipeline.split_images("test")
    raw_cfg = OmegaConf.merge(checkpoint["mrinet"]["data"], {"normalization": "none"})
    raw = checkpoint_datamodule(checkpoint, raw_cfg)  # the same crops in the files' units
    raw.setup("test")
    raw_images, raw_labels = raw.split_images("test")
    assert torch.equal(labels, raw_labels) and not torch.allclose(images, raw_images)
    with torch.inference_mode():
        want_p = model.predict_proba(images).numpy()
        want_c = model.predict_classes(images).numpy()
    for fmt, path in cnn["files"].items():
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        assert meta["inputs"]["kind"] == "images" and meta["inputs"]["shape"] == ["N", 1, 48, 48]
        got_p, got_c = run_file(path, raw_images.numpy())
        np.testing.assert_allclose(got_p, want_p, atol=1e-5, rtol=0, err_msg=fmt)
        np.testing.assert_array_equal(got_c, want_c, err_msg=fmt)
        accuracy = float((got_c == labels.numpy()).mean())
        assert accuracy == pytest.approx(evaluated["test/acc"], abs=1e-6), fmt


@pytest.mark.e2e
def test_files_carry_their_metadata(mlp):
    import onnx

    proto = onnx.load(str(mlp["files"]["onnx"]))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["thalamus", "corpus_callosum", "cortical_wm"]
    assert json.loads(props["mrinet"])["inputs"]["columns"][:2] == ["T1w", "FA"]
    extra = {"mrinet.json": ""}
    torch.jit.load(str(mlp["files"]["torchscript"]), _extra_files=extra)
    assert json.loads(extra["mrinet.json"])["format"] == "torchscript"


def test_unknown_format_and_unwritable_output_are_clear_errors(tmp_path, cli):
    ckpt = tmp_path / "never-read.ckpt"  # both are refused before the checkpoint is read
    proc = export(cli, ckpt, "tflite", tmp_path / "m.tflite", tmp_path)
    assert proc.returncode == 1 and "unknown format 'tflite'" in proc.stderr, proc.stderr[-2000:]
    assert "format=<one of onnx, torchscript>" in proc.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = export(cli, ckpt, "onnx", blocker / "model.onnx", tmp_path)
    assert proc.returncode == 1 and "cannot write the exported model" in proc.stderr
    assert str(blocker / "model.onnx") in proc.stderr and "Traceback" not in proc.stderr


class Branchy(nn.Module):
    """A net that branches on a tensor's value: no graph can hold that branch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.inner(x)
        return -self.inner(x)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_untraceable_net_names_the_module_and_the_op(fmt, tmp_path):
    from functools import partial

    from mrinet.data.contract import DataSpec
    from mrinet.models.classifier import Classifier
    from mrinet.run.export_graph import ExportError
    from mrinet.run.exporter import export_model

    model = Classifier(nn.Sequential(Branchy(nn.Linear(3, 2))), partial(torch.optim.Adam))
    model.set_data_spec(DataSpec(classes=["a", "b"], input_mean=[0] * 3, input_std=[1] * 3))
    with pytest.raises(ExportError) as caught:
        export_model(model, {"data": {"features": ["x", "y", "z"]}}, fmt, tmp_path / "m.out")
    message = str(caught.value)
    assert "module 'net.0'" in message and "Branchy" in message, message
    assert "`if x.sum() > 0:`" in message and "fix:" in message
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("method", ["percentile", "meanstd", "none"])
def test_graph_normalisation_equals_the_data_pipelines(method):
    """Large images (the percentile's subgrid), a blank one (its fallback), as the loaders do."""
    from mrinet.data.recon_quality.transforms import normalize_images
    from mrinet.run.export_graph import PerImageNormalization

    x = torch.rand(3, 1, 330, 300, generator=torch.Generator().manual_seed(0)) * 500
    x[1] = 0.0
    x[2, 0, :, :200] = 0.0  # mostly background
    want = normalize_images(x.clone(), method, 99.0)
    got = PerImageNormalization(method, 99.0)(x)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.e2e
def test_context_mlp_export_equals_predict(context_stage1, tmp_path, data_dir, cli):
    """A context MLP's rows are the features then the context columns mrinet builds for a
    subject (mrinet.data.tissue.subjects.subject_context): fed those, the export equals predict."""
    import nibabel as nib

    from mrinet.data.tissue.context import ContextSpec
    from mrinet.data.tissue.subjects import read_subject, subject_context
    from mrinet.run.checkpoints import load_checkpoint

    ckpt = context_stage1["ckpt"]  # the session's tiny dti_mlp_context run
    path = tmp_path / "context.onnx"
    proc = export(cli, ckpt, "onnx", path, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    subject = sorted((data_dir / "dti_synthetic").glob("*/sub-*"))[0]
    out = tmp_path / "pred" / "tissue.nii.gz"
    proc = cli(
        "mrinet.predict",
        f"ckpt_path={ckpt}",
        f"input={subject}",
        f"output={out}",
        "mask=labels",
        f"hydra.run.dir={tmp_path / 'predict'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tissue = np.asarray(nib.load(out).dataobj)
    proba = np.asarray(nib.load(out.with_name("tissue_proba.nii.gz")).dataobj)
    keep = tissue > 0
    data_cfg = load_checkpoint(ckpt)["mrinet"]["data"]
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    features = list(data_cfg["features"])
    maps, affine = read_subject(subject, features)
    context = ContextSpec.from_data_config(data_cfg)
    x = np.concatenate(
        [
            np.stack([maps[f][keep] for f in features], axis=1),
            subject_context(subject, maps, features, keep, affine, context),
        ],
        axis=1,
    ).astype(np.float32)
    assert [meta["inputs"]["shape"][1]] == [x.shape[1]] and x.shape[1] > len(features)
    got_p, got_c = run_file(path, x)
    np.testing.assert_allclose(got_p, proba[keep], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got_c + 1, tissue[keep])
