"""Predict a tissue-class map for one subject folder with a trained checkpoint.

python -m mrinet.predict ckpt_path=.../best.ckpt input=SUBJECT_DIR output=pred.nii.gz
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from mrinet.data.tissue.columns import parse_context
from mrinet.data.tissue.subjects import (
    class_lookup,
    convert_diffusivity_units,
    read_brain_mask,
    read_labels,
    read_subject,
)
from mrinet.errors import CheckpointError, ConfigError, DataNotFoundError, check_choice
from mrinet.io.atomic import atomic_file
from mrinet.io.layouts import get_layout
from mrinet.io.nifti import save_nifti
from mrinet.io.subjects import find_nifti
from mrinet.run.entry import apply_extras, hydra_command, register_resolvers
from mrinet.run.preflight import check_writable_dir

log = logging.getLogger("mrinet.predict")
register_resolvers()
MASKS = ("auto", "brain", "labels", "all")


def choose_source(subject_dir: Path, source: str, features) -> str:
    """`auto`: read feature maps when they are there, else fit tensors to the raw DWI."""
    if source != "auto":
        return source
    has_maps = all(
        find_nifti(subject_dir, f) or find_nifti(subject_dir, f"dti_{f}")
        for f in features
        if f != "T1w"
    )
    return "nifti" if has_maps or not find_nifti(subject_dir, "data") else "dwi"


def subject_classes(subject_dir: Path, shape, affine, data_cfg: dict, layout: str):
    """Class index per voxel (X, Y, Z) int64 from the subject's label volume (-1: no class), or
    None when the subject has no label volume."""
    label_file = data_cfg.get("label_file", "aparc+aseg.nii.gz")
    if not get_layout(layout).label_path(subject_dir, label_file).is_file():
        return None
    labels = read_labels(
        subject_dir, label_file, shape, affine, bool(data_cfg.get("resample_labels", False)), layout
    )
    lookup = class_lookup(data_cfg["classes"], data_cfg["label_map"])
    classes = np.full(labels.shape, -1, dtype=np.int64)
    for code, index in lookup.items():
        classes[labels == code] = index
    return classes


def voxel_mask(
    subject_dir: Path, maps: dict, affine, how: str, data_cfg: dict, layout: str = "flat"
) -> np.ndarray:
    """Which voxels to classify (see configs/predict.yaml `mask`)."""
    stack = np.stack(list(maps.values()), axis=-1)
    finite = np.all(np.isfinite(stack), axis=-1)
    check_choice(how, MASKS, "mask")
    if how == "all":
        return finite
    if how == "labels":
        classes = subject_classes(subject_dir, finite.shape, affine, data_cfg, layout)
        if classes is None:
            raise DataNotFoundError(
                "mask=labels, but the subject has no label volume",
                subject_dir / data_cfg.get("label_file", "aparc+aseg.nii.gz"),
                "add the label volume or use mask=auto",
            )
        return finite & (classes >= 0)
    brain, brain_path = read_brain_mask(subject_dir, finite.shape, affine, layout)
    if brain is not None:
        return finite & brain
    if how == "brain":
        raise DataNotFoundError("no brain mask", brain_path, "add it or use mask=auto")
    return finite & np.any(stack != 0, axis=-1)


def check_context(data_cfg: dict, asked, ckpt_path) -> None:
    """predict builds the spatial context the checkpoint was trained with; asking for another
    (e.g. context=none for a model trained with coords) is an error that says so."""
    trained = parse_context(data_cfg.get("context", "none"))
    if asked is None:
        return
    wanted = parse_context(asked if isinstance(asked, str) else list(asked))
    if wanted != trained:
        raise CheckpointError(
            f"the checkpoint was trained with spatial context data.context="
            f"{list(trained) or 'none'}, not {list(wanted) or 'none'}: its inputs are the "
            f"features plus that context",
            ckpt_path,
            "drop the context= override (predict builds the checkpoint's context itself), or "
            "use a checkpoint trained with that context",
        )


def dice_against_labels(predicted: np.ndarray, truth: np.ndarray, names) -> dict[str, float]:
    """Dice per class and macro of a written map (0 = background, k = class k - 1) against the
    label volume's classes (-1 = no class), over the whole volume (false positives included)."""
    import torch

    # lazy: these import torch; keeps `mrinet-predict --help` start-up fast
    from mrinet.models.metrics import dice_from_confusion

    k = len(names) + 1  # counts of (truth, predicted) with 0 = background / no class
    t = np.where((truth >= 0) & (truth < k - 1), truth + 1, 0).astype(np.int64)
    p = np.where((predicted > 0) & (predicted < k), predicted, 0).astype(np.int64)
    confmat = torch.from_numpy(np.bincount((t * k + p).ravel(), minlength=k * k)).view(k, k)
    dice = dice_from_confusion(confmat)[0][1:]  # over the whole volume, false positives included
    present = confmat[1:].sum(1) > 0
    out = {f"dice_{name}": float(d) for name, d in zip(names, dice)}
    out["dice_macro"] = float(dice[present].mean()) if present.any() else 0.0
    return out


def predict_subject(
    model,
    subject_dir: Path,
    data_cfg: dict,
    source: str,
    mask: str,
    batch_size: int,
    layout: str | None = None,
    context=None,
):
    """Class map (X, Y, Z) uint8 with 0 = background and probabilities (X, Y, Z, K), plus affine.

    Inputs are built as in training: the checkpoint's features, then its spatial context
    (`context`: a ContextSpec; by default the one `data_cfg` records)."""
    # lazy: these import torch; keeps `mrinet-predict --help` start-up fast
    from mrinet.data.tissue.first_stage import context_for, voxel_probabilities

    layout = layout or data_cfg.get("layout", "flat")
    features = list(data_cfg["features"])
    if context is None:
        context = context_for(data_cfg)
    maps, affine = read_subject(subject_dir, features, source, layout)
    keep = voxel_mask(subject_dir, maps, affine, mask, data_cfg, layout)
    convert_diffusivity_units(maps, str(subject_dir), keep if keep.any() else None)
    proba = voxel_probabilities(
        model, maps, features, keep, affine, context, subject_dir, layout, batch_size
    )
    n_classes = len(data_cfg["classes"])
    classes = np.zeros(keep.shape, dtype=np.uint8)
    probabilities = np.zeros((*keep.shape, n_classes), dtype=np.float32)
    if len(proba):
        classes[keep] = proba.argmax(1).astype(np.uint8) + 1
        probabilities[keep] = proba
    return classes, probabilities, affine


def predict(cfg: DictConfig) -> Path:
    """Load the checkpoint, classify every selected voxel, write the maps atomically."""
    apply_extras(cfg)
    # lazy: these import torch; keeps `mrinet-predict --help` start-up fast
    from mrinet.data.tissue.first_stage import context_for
    from mrinet.run.checkpoints import build_model, load_checkpoint

    subject_dir = Path(cfg.input)
    if not subject_dir.is_dir():
        raise DataNotFoundError(
            "subject folder not found", subject_dir, "give input=<one subject's folder>"
        )

    output = Path(cfg.output) if cfg.output else subject_dir / "mrinet_tissue.nii.gz"
    check_writable_dir(output.parent, "output")  # before minutes of work, not after
    checkpoint = load_checkpoint(cfg.ckpt_path)
    data_cfg = checkpoint["mrinet"]["data"]
    if "features" not in data_cfg or "label_map" not in data_cfg:
        raise ConfigError(
            "this checkpoint was not trained on DTI voxels (no features/label map recorded)",
            cfg.ckpt_path,
            "use a checkpoint of experiment=dti_mlp (or another DTI experiment)",
        )
    check_context(data_cfg, cfg.get("context"), cfg.ckpt_path)
    model = build_model(checkpoint, cfg.ckpt_path)
    layout = cfg.get("layout") or data_cfg.get("layout", "flat")
    source = choose_source(subject_dir, cfg.source, data_cfg["features"])
    # an auto-context checkpoint carries its first stage: the recorded path may be gone
    context = context_for(data_cfg, checkpoint["mrinet"].get("context_model"))
    classes, probabilities, affine = predict_subject(
        model, subject_dir, data_cfg, source, cfg.mask, int(cfg.batch_size), layout, context
    )
    stem = output.name[: -len(".nii.gz")] if output.name.endswith(".nii.gz") else output.stem
    proba_path = output.with_name(f"{stem}_proba{''.join(output.suffixes) or '.nii.gz'}")
    save_nifti(output, classes, affine)
    save_nifti(proba_path, probabilities, affine)
    counts = {name: int((classes == k + 1).sum()) for k, name in enumerate(data_cfg["classes"])}
    log.info("wrote %s and %s; voxels per class: %s", output, proba_path, counts)
    truth = subject_classes(subject_dir, classes.shape, affine, data_cfg, layout)
    if truth is not None:  # labels at hand: how good is the written map?
        import json

        dice = dice_against_labels(classes, truth, list(data_cfg["classes"]))
        dice_path = output.with_name(f"{stem}_dice.json")
        with atomic_file(dice_path) as tmp:
            tmp.write_text(json.dumps({"input": str(subject_dir), **dice}, indent=2))
        log.info(
            "Dice against the subject's labels (%s): %s",
            dice_path.name,
            {k: round(v, 3) for k, v in dice.items()},
        )
    return output


main = hydra_command("predict", predict)


if __name__ == "__main__":
    main()
