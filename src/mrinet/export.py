"""Export a trained checkpoint as a self-contained ONNX or TorchScript model.

python -m mrinet.export ckpt_path=.../best.ckpt format=onnx output=model.onnx

The exported graph takes raw inputs in the units of the training data and returns the class
probabilities and the decided class: the training split's standardisation (voxel models), the
per-image normalisation (image models) and the decision rule's logit offsets are inside it.
Every export is checked against the checkpoint's own model on fresh inputs before it is kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import linecache
import logging
import os
import traceback
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from mrinet.errors import ConfigError, MrinetError, check_choice
from mrinet.run.config_dir import config_dir
from mrinet.run.entry import apply_extras, guarded, register_resolvers

log = logging.getLogger("mrinet.export")
register_resolvers()
FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME, OUTPUT_NAMES = "inputs", ("probabilities", "classes")
TOLERANCE = 1e-5  # largest |p_exported - p_checkpoint| accepted by the built-in check


class ExportError(MrinetError):
    """The checkpoint's model cannot be written as a graph, or the graph differs from it."""


class PerImageNormalization(nn.Module):
    """mrinet.data.recon_quality.transforms.normalize_images as graph ops: the exported image model
    takes cropped magnitude images in the reconstruction's units, as the data files hold them."""

    def __init__(self, method: str = "percentile", percentile: float = 99.0) -> None:
        super().__init__()
        from mrinet.data.recon_quality.transforms import NORMALIZATIONS

        self.method = check_choice(method, NORMALIZATIONS, "data.normalization")
        self.percentile = float(percentile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return x
        shape = (-1, *([1] * (x.ndim - 1)))
        if self.method == "meanstd":
            flat = x.reshape(x.shape[0], -1)
            return (x - flat.mean(1).view(shape)) / flat.std(1).clamp(min=1e-12).view(shape)
        from mrinet.data.recon_quality.transforms import PERCENTILE_PIXELS

        sample = x  # the same regular subgrid as percentile_scales (static sizes: traced once)
        while sample.shape[-1] * sample.shape[-2] > PERCENTILE_PIXELS:
            sample = sample[..., ::2, ::2]
        flat = sample.reshape(sample.shape[0], -1)
        n = flat.shape[1]
        position = self.percentile / 100.0 * (n - 1)
        lower = int(position // 1)
        upper = min(lower + 1, n - 1)
        ordered = torch.sort(flat, dim=1).values.double()
        low, high = ordered[:, lower], ordered[:, upper]
        value = (low + (position - lower) * (high - low)).float()
        largest = x.abs().reshape(x.shape[0], -1).amax(1)
        value = torch.where(value > 0, value, largest).clamp(min=1e-12)
        return x / value.view(shape)


class ExportedClassifier(nn.Module):
    """Raw inputs -> (class probabilities, decided class), as `predict_proba` and `decide`."""

    def __init__(self, model: nn.Module, prepare: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.prepare = prepare if prepare is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(self.prepare(x))
        return self.model.probabilities(logits), self.model.decide(logits)


def first_layer(net: nn.Module) -> nn.Module | None:
    """The net's first Linear or Conv layer (what its inputs look like)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            return module
    return None


def describe_inputs(model: nn.Module, info: dict) -> dict:
    """What the exported model takes: kind, shape, and (voxels) the column names and units."""
    data = info.get("data", {})
    if getattr(model.net, "dense_output", False) or isinstance(first_layer(model.net), nn.Conv3d):
        raise ExportError(
            f"{type(model.net).__name__} classifies whole volumes (a segmentation net): export "
            "supports voxel models (one feature row per voxel) and image classifiers",
            "model.net",
            "export a voxel model (experiment=dti_mlp, dti_mlp_context) or an image CNN",
        )
    layer = first_layer(model.net)
    width = int(model.input_mean.numel()) or (
        layer.in_features if isinstance(layer, nn.Linear) else 0
    )
    if isinstance(layer, nn.Conv2d):
        height, breadth = data.get("crop") or getattr(model, "image_size", (0, 0))
        return {
            "kind": "images",
            "shape": ["N", int(layer.in_channels), int(height), int(breadth)],
            "description": (
                f"magnitude images (N, {layer.in_channels}, {height}, {breadth}) float32: the "
                "reconstructions centre-cropped to data.crop, in the units of the files "
                f"(per-image normalisation {data.get('normalization', 'none')!r} is inside)"
            ),
            "normalization": data.get("normalization", "none"),
            "percentile": float(data.get("percentile", 99.0)),
        }
    if not width:
        raise ExportError(
            f"cannot tell the input size of {type(model.net).__name__}: it has no Linear/Conv "
            "layer and the checkpoint no input statistics",
            "model.net",
            "export a model whose first layer is nn.Linear (voxels) or nn.Conv2d (images)",
        )
    features = [str(f) for f in data.get("features", [])]
    context = data.get("context", "none")
    context = "none" if context in (None, "none", []) else context
    columns = features + [f"context[{i}]" for i in range(width - len(features))]
    return {
        "kind": "voxels",
        "shape": ["N", width],
        "columns": columns,
        "description": (
            f"one row per voxel (N, {width}) float32: the features {features} in the units "
            "of the training data (FA unitless, MD/AD/RD in um^2/ms)"
            + (
                f", then {width - len(features)} spatial context columns (data.context="
                f"{context}) as mrinet.data.tissue.subjects.subject_context builds them"
                if width > len(features)
                else ""
            )
            + "; standardisation with the training split's statistics is inside"
        ),
    }


def example_inputs(inputs: dict, model: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    """Plausible raw inputs of batch size n (the training statistics' range where known)."""
    generator = torch.Generator().manual_seed(seed)
    shape = [n, *inputs["shape"][1:]]
    x = torch.randn(shape, generator=generator)
    if inputs["kind"] == "images":
        return x.abs() * 100.0  # magnitudes in arbitrary file units
    if model.input_mean.numel():
        x = model.input_mean + model.input_std * x
    return x


def metadata(model: nn.Module, info: dict, inputs: dict, ckpt_path, fmt: str) -> dict:
    """What a consumer of the file needs: inputs, outputs, classes, decision rule, provenance."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mrinet_version = version("mrinet")
    except PackageNotFoundError:
        mrinet_version = "unknown"
    return {
        "format": fmt,
        "inputs": {"name": INPUT_NAME, **inputs},
        "outputs": {
            "probabilities": "(N, C) float32, rows sum to 1 (as mrinet.predict writes them)",
            "classes": "(N,) int64, index into `classes` (argmax after the decision rule)",
        },
        "classes": list(model.class_names or []),
        "decision": getattr(model, "decision", "argmax"),
        "logit_offset": [float(v) for v in model.logit_offset.tolist()],
        "model": info.get("model", {}).get("_target_"),
        "net": type(model.net).__module__ + "." + type(model.net).__name__,
        "task_name": info.get("task_name"),
        "checkpoint": str(Path(ckpt_path).resolve()) if ckpt_path else None,
        "mrinet_version": mrinet_version,
        "torch_version": torch.__version__,
    }


# ---- a clear error when the model cannot be traced ---------------------------------------------
def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def untraceable(err: BaseException, wrapper: ExportedClassifier, fmt: str) -> ExportError:
    """Name the module (its path in the model and class) and the source line that broke tracing."""
    names = {id(m): name for name, m in wrapper.model.named_modules()}
    found = None
    for cause in _chain(err):
        for frame, lineno in traceback.walk_tb(cause.__traceback__):
            owner = frame.f_locals.get("self")
            if owner is not None and id(owner) in names and names[id(owner)]:
                found = (owner, names[id(owner)], frame.f_code.co_filename, lineno)
    # the innermost cause says what failed (the exporters wrap it in their own errors)
    messages = [str(c).strip().splitlines()[0] for c in _chain(err) if str(c).strip()]
    reason = messages[-1] if messages else type(err).__name__
    if found is None:
        return ExportError(
            f"format={fmt}: the model cannot be traced ({type(err).__name__}: {reason[:300]})",
            "model.net",
            "use tensor operations only in forward (no Python branches on tensor values, no "
            ".item()/.numpy()), or export with the other format",
        )
    return _named_error(fmt, *found, reason)


def _named_error(fmt: str, owner, name: str, filename: str, lineno: int, reason: str):
    op = linecache.getline(filename, lineno).strip() or "?"
    return ExportError(
        f"format={fmt}: module {name!r} ({type(owner).__module__}.{type(owner).__qualname__}) "
        f"cannot be traced at `{op}` ({filename}:{lineno}): {reason[:300]}",
        "model.net",
        "replace that operation with tensor operations (e.g. torch.where instead of an `if` on a "
        "tensor's value, no .item()/.numpy()/.tolist()), then retrain or reload its weights",
    )


# ---- the two formats ----------------------------------------------------------------------------
def _onnx_bytes(
    wrapper: ExportedClassifier, example: torch.Tensor, meta: dict, opset: int
) -> bytes:
    try:
        import onnx  # noqa: F401  (torch.onnx's exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"format=onnx needs the packages onnx and onnxscript ({err})",
            "format",
            "pip install 'mrinet[export]' (or use format=torchscript)",
        ) from err
    for name in ("torch.onnx", "onnx_ir", "onnxscript"):  # progress chatter, not news
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in (("mrinet", json.dumps(meta)), ("classes", json.dumps(meta["classes"]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = meta["inputs"]["description"]
    return proto.SerializeToString()


def _torchscript_bytes(wrapper: ExportedClassifier, example: torch.Tensor, meta: dict) -> bytes:
    # torch.jit.trace freezes a branch on a tensor's value without a word (a TracerWarning that
    # shape checks raise too): torch.export first, which refuses exactly those, naming the line
    torch.export.export(
        wrapper, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), strict=False
    )
    model = wrapper.model
    # the tracer reads every attribute; a LightningModule's `trainer` raises unless it is told
    # it is being traced (what LightningModule.to_torchscript does)
    model._jit_is_scripting = True
    try:
        with warnings.catch_warnings():
            # shape and size checks become constants of the fixed-size graph (checked above)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    finally:
        del model._jit_is_scripting
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"mrinet.json": json.dumps(meta)})
    return buffer.getvalue()


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and classes of an exported file on x (onnxruntime or torch.jit)."""
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            proba, classes = loaded(x)
        return proba, classes
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError(
            "checking the exported ONNX model needs onnxruntime",
            "verify",
            "pip install 'mrinet[export]', or verify=false to skip the check",
        ) from err
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    proba, classes = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    return torch.from_numpy(proba), torch.from_numpy(classes)


def check_output(output: Path) -> None:
    """Refuse an output the export could not write, before minutes of tracing."""
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{output.name}.{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"cannot write the exported model there ({type(err).__name__}: {err.strerror or err})",
            output,
            "give output=<a file in a writable folder>",
        ) from err
    if output.is_dir():
        raise ConfigError(
            "output is a folder", output, f"give output={output}/model<.onnx|.pt>, a file name"
        )


def export_model(
    model: nn.Module,
    info: dict,
    fmt: str,
    output: str | Path,
    ckpt_path=None,
    opset: int = 18,
    verify: bool = True,
) -> Path:
    """Write `model` (a Classifier) as `fmt` to `output` with its metadata (also in
    `<output>.json`); with `verify`, check it against the model on fresh inputs first."""
    from mrinet.io.atomic import atomic_file

    check_choice(fmt, FORMATS, "format")
    output = Path(output)
    check_output(output)
    model = model.eval().cpu()
    inputs = describe_inputs(model, info)
    prepare = None
    if inputs["kind"] == "images":
        prepare = PerImageNormalization(inputs["normalization"], inputs["percentile"])
    wrapper = ExportedClassifier(model, prepare).eval()
    meta = metadata(model, info, inputs, ckpt_path, fmt)
    example = example_inputs(inputs, model, 3)
    try:
        with torch.no_grad():
            wrapper(example)  # an error of the model itself is not a tracing error
    except Exception as err:
        raise ExportError(
            f"the model fails on inputs of shape {list(example.shape)} before any tracing "
            f"({type(err).__name__}: {str(err).strip()[:300]})",
            "model.net",
            "check that the checkpoint loads and predicts (mrinet.eval ckpt_path=...)",
        ) from err
    chatter = io.StringIO()  # torch.export prints the graph of every strategy it tries
    try:
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
        ):
            # ImageClassifier keeps its last logits for its figures: harmless in a graph
            warnings.filterwarnings("ignore", message=".*was assigned during export.*")
            if fmt == "onnx":
                data = _onnx_bytes(wrapper, example, meta, opset)
            else:
                data = _torchscript_bytes(wrapper, example, meta)
    except MrinetError:
        raise
    except Exception as err:
        raise untraceable(err, wrapper, fmt) from err
    finally:
        log.debug("the exporter said:\n%s", chatter.getvalue())
    with atomic_file(output) as tmp:
        tmp.write_bytes(data)
        if verify:
            check_parity(wrapper, Path(tmp), fmt, inputs, model)
    with atomic_file(output.with_name(output.name + ".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return output


def check_parity(wrapper, path: Path, fmt: str, inputs: dict, model) -> None:
    """The written file must give the model's probabilities (1e-5) and classes on new inputs
    (another batch size than the one traced, one sample included)."""
    for n, seed in ((5, 1), (1, 2)):
        x = example_inputs(inputs, model, n, seed)
        with torch.inference_mode():
            want_p, want_c = wrapper(x)
        got_p, got_c = run_exported(path, fmt, x)
        gap = float((got_p - want_p).abs().max())
        if gap > TOLERANCE or not torch.equal(got_c.long(), want_c.long()):
            raise ExportError(
                f"format={fmt}: the exported graph differs from the checkpoint's model on "
                f"{n} new inputs (max |dp| {gap:.2e}, classes equal: "
                f"{torch.equal(got_c.long(), want_c.long())}): the trace froze a value that "
                "depends on the inputs",
                "model.net",
                "make the net's forward use tensor operations only, or try the other format",
            )


def default_output(cfg: DictConfig, fmt: str) -> Path:
    """`<run dir>/model.onnx` (or .pt) when output is not given."""
    return Path(cfg.paths.output_dir) / f"model{SUFFIXES[fmt]}"


def export(cfg: DictConfig) -> Path:
    """Load the checkpoint, export it, log where it went."""
    apply_extras(cfg)
    from mrinet.run.checkpoints import build_model, load_checkpoint

    fmt = check_choice(str(cfg.format), FORMATS, "format")
    output = Path(cfg.output) if cfg.get("output") else default_output(cfg, fmt)
    check_output(output)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    model = build_model(checkpoint, cfg.ckpt_path)
    path = export_model(
        model,
        checkpoint["mrinet"],
        fmt,
        output,
        cfg.ckpt_path,
        opset=int(cfg.get("opset", 18)),
        verify=bool(cfg.get("verify", True)),
    )
    log.info("wrote %s (%s) and %s", path, fmt, path.name + ".json")
    print(f"exported {cfg.ckpt_path} -> {path}")
    return path


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
@guarded
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
