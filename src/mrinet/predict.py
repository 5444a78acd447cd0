"""Predict a tissue-class map for one subject folder with a trained checkpoint.

python -m mrinet.predict ckpt_path=.../best.ckpt input=SUBJECT_DIR output=pred.nii.gz
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from mrinet.errors import ConfigError, DataNotFoundError, check_choice
from mrinet.run.config_dir import config_dir
from mrinet.run.entry import apply_extras, guarded, register_resolvers

log = logging.getLogger("mrinet.predict")
register_resolvers()
MASKS = ("auto", "brain", "labels", "all")


def choose_source(subject_dir: Path, source: str, features) -> str:
    """`auto`: read feature maps when they are there, else fit tensors to the raw DWI."""
    from mrinet.io.subjects import find_nifti

    if source != "auto":
        return source
    has_maps = all(
        find_nifti(subject_dir, f) or find_nifti(subject_dir, f"dti_{f}")
        for f in features
        if f != "T1w"
    )
    return "nifti" if has_maps or not find_nifti(subject_dir, "data") else "dwi"


def voxel_mask(
    subject_dir: Path, maps: dict, affine, how: str, data_cfg: dict, source: str
) -> np.ndarray:
    """Which voxels to classify (see configs/predict.yaml `mask`)."""
    from mrinet.data.voxels import class_lookup, read_labels
    from mrinet.io.nifti import load_nifti
    from mrinet.io.subjects import find_nifti

    stack = np.stack(list(maps.values()), axis=-1)
    finite = np.all(np.isfinite(stack), axis=-1)
    brain = find_nifti(subject_dir, "nodif_brain_mask")
    check_choice(how, MASKS, "mask")
    if how == "all":
        return finite
    if how == "labels":
        lookup = class_lookup(data_cfg["classes"], data_cfg["label_map"])
        labels = read_labels(
            subject_dir,
            data_cfg.get("label_file", "aparc+aseg.nii.gz"),
            finite.shape,
            affine,
            bool(data_cfg.get("resample_labels", False)),  # as in training (was: `source`)
        )
        return finite & np.isin(labels, list(lookup))
    if brain is not None:
        return finite & (load_nifti(brain, ndim=3)[0] > 0)
    if how == "brain":
        raise DataNotFoundError(
            "no brain mask", subject_dir / "nodif_brain_mask.nii.gz", "add it or use mask=auto"
        )
    return finite & np.any(stack != 0, axis=-1)


def predict_subject(
    model, subject_dir: Path, data_cfg: dict, source: str, mask: str, batch_size: int
):
    """Class map (X, Y, Z) uint8 with 0 = background and probabilities (X, Y, Z, K), plus affine."""
    import torch

    from mrinet.data.voxels import convert_diffusivity_units, read_subject

    features = list(data_cfg["features"])
    maps, affine = read_subject(subject_dir, features, source)
    keep = voxel_mask(subject_dir, maps, affine, mask, data_cfg, source)
    convert_diffusivity_units(maps, str(subject_dir), keep if keep.any() else None)
    x = torch.from_numpy(np.stack([maps[f][keep] for f in features], axis=1).astype(np.float32))
    with torch.inference_mode():
        proba = (
            torch.cat([model.predict_proba(chunk) for chunk in x.split(batch_size)])
            if len(x)
            else x
        )
    n_classes = len(data_cfg["classes"])
    shape = keep.shape
    classes = np.zeros(shape, dtype=np.uint8)
    probabilities = np.zeros((*shape, n_classes), dtype=np.float32)
    if len(x):
        classes[keep] = proba.argmax(1).numpy().astype(np.uint8) + 1
        probabilities[keep] = proba.numpy()
    return classes, probabilities, affine


def predict(cfg: DictConfig) -> Path:
    """Load the checkpoint, classify every selected voxel, write the maps atomically."""
    apply_extras(cfg)
    from mrinet.io.nifti import save_nifti
    from mrinet.run.checkpoints import build_model, load_checkpoint

    subject_dir = Path(cfg.input)
    if not subject_dir.is_dir():
        raise DataNotFoundError(
            "subject folder not found", subject_dir, "give input=<one subject's folder>"
        )
    checkpoint = load_checkpoint(cfg.ckpt_path)
    data_cfg = checkpoint["mrinet"]["data"]
    if "features" not in data_cfg or "label_map" not in data_cfg:
        raise ConfigError(
            "this checkpoint was not trained on DTI voxels (no features/label map recorded)",
            cfg.ckpt_path,
            "use a checkpoint of experiment=dti_mlp (or another DTI experiment)",
        )
    model = build_model(checkpoint, cfg.ckpt_path)
    source = choose_source(subject_dir, cfg.source, data_cfg["features"])
    classes, probabilities, affine = predict_subject(
        model, subject_dir, data_cfg, source, cfg.mask, int(cfg.batch_size)
    )
    output = Path(cfg.output) if cfg.output else subject_dir / "mrinet_tissue.nii.gz"
    stem = output.name[: -len(".nii.gz")] if output.name.endswith(".nii.gz") else output.stem
    proba_path = output.with_name(f"{stem}_proba{''.join(output.suffixes) or '.nii.gz'}")
    save_nifti(output, classes, affine)
    save_nifti(proba_path, probabilities, affine)
    counts = {name: int((classes == k + 1).sum()) for k, name in enumerate(data_cfg["classes"])}
    log.info("wrote %s and %s; voxels per class: %s", output, proba_path, counts)
    return output


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="predict")
@guarded
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
