"""The graph an export writes: raw inputs -> (class probabilities, decided class), with the
training data's standardisation, the per-image normalisation and the decision rule inside, and
the metadata that describes its inputs and outputs (mrinet.cli.export is the command)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mrinet.data.recon_quality.transforms import NORMALIZATIONS, PERCENTILE_PIXELS
from mrinet.errors import MrinetError, check_choice

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAMES = "inputs", ("probabilities", "classes")


class ExportError(MrinetError):
    """The checkpoint's model cannot be written as a graph, or the graph differs from it."""


class PerImageNormalization(nn.Module):
    """mrinet.data.recon_quality.transforms.normalize_images as graph ops: the exported image model
    takes cropped magnitude images in the reconstruction's units, as the data files hold them."""

    def __init__(self, method: str = "percentile", percentile: float = 99.0) -> None:
        super().__init__()

        self.method = check_choice(method, NORMALIZATIONS, "data.normalization")
        self.percentile = float(percentile)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return x
        shape = (-1, *([1] * (x.ndim - 1)))
        if self.method == "meanstd":
            flat = x.reshape(x.shape[0], -1)
            return (x - flat.mean(1).view(shape)) / flat.std(1).clamp(min=1e-12).view(shape)

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
