"""Writing a Classifier as an ONNX or TorchScript file: trace, name the line that cannot be
traced, write atomically with its metadata, and check the file against the model."""

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

import torch
from torch import nn

from mrinet.errors import ConfigError, MrinetError, check_choice
from mrinet.io.atomic import atomic_file
from mrinet.run.export_graph import (
    FORMATS,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportedClassifier,
    ExportError,
    PerImageNormalization,
    describe_inputs,
    example_inputs,
    metadata,
)

log = logging.getLogger("mrinet.export")
TOLERANCE = 1e-5  # largest |p_exported - p_checkpoint| accepted by the built-in check


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
