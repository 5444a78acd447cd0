"""Export a trained checkpoint as a self-contained ONNX or TorchScript model.

    mrinet-export ckpt_path=.../best.ckpt format=onnx output=model.onnx

(also `python -m mrinet.export`). The exported graph takes raw inputs in the units of the
training data and returns the class probabilities and the decided class: the training split's
standardisation (voxel models), the per-image normalisation (image models) and the decision
rule's logit offsets are inside it (mrinet.run.export_graph). Every export is checked
against the checkpoint's own model on fresh inputs before it is kept (mrinet.run.exporter).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from mrinet.errors import check_choice
from mrinet.run.checkpoints import build_model, load_checkpoint
from mrinet.run.entry import apply_extras, hydra_command, register_resolvers
from mrinet.run.export_graph import FORMATS
from mrinet.run.exporter import check_output, export_model

log = logging.getLogger("mrinet.export")
register_resolvers()
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


def default_output(cfg: DictConfig, fmt: str) -> Path:
    """`<run dir>/model.onnx` (or .pt) when output is not given."""
    return Path(cfg.paths.output_dir) / f"model{SUFFIXES[fmt]}"


def export(cfg: DictConfig) -> Path:
    """Load the checkpoint, export it, log where it went."""
    apply_extras(cfg)

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


main = hydra_command("export", export)


if __name__ == "__main__":
    main()
