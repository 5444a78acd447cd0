"""Which images a split holds: reconstruction files per (tag, volume), labelled by class."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mrinet.data.recon_quality.transforms import normalize_images
from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.fastmri import read_reconstruction
from mrinet.io.recon_files import center_crop_box

log = logging.getLogger(__name__)


@dataclass
class ImageIndex:
    """Images of one split: file per (tag, volume), and per image its file, slice, label, volume."""

    files: list[Path]
    file_index: np.ndarray  # (N,) int64 into `files`
    slice_index: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64 class index
    volumes: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.labels)


def discover_volumes(
    recon_dir: Path, class_tags: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Path]]:
    """tag -> {volume: file} for every configured tag; only volumes present under every tag."""
    recon_dir = Path(recon_dir)
    if not recon_dir.is_dir():
        raise DataNotFoundError(
            "reconstruction directory not found",
            recon_dir,
            "set data.recon_dir to the folder holding <tag>/<volume>.h5 (scripts/reconstruct.py --out)",
        )
    available = sorted(p.name for p in recon_dir.iterdir() if p.is_dir())
    per_tag: dict[str, dict[str, Path]] = {}
    for tags in class_tags.values():
        for tag in tags:
            folder = recon_dir / tag
            files = {p.stem: p for p in sorted(folder.glob("*.h5"))} if folder.is_dir() else {}
            if not files:
                raise DataNotFoundError(
                    f"no reconstructions for tag {tag!r} (tags found: {available})",
                    folder,
                    "reconstruct with that tag or change data.class_tags",
                )
            per_tag[tag] = files
    common = set.intersection(*(set(files) for files in per_tag.values()))
    for tag, files in per_tag.items():
        missing = sorted(set(files) - common)
        if missing:
            log.warning("tag %s: volumes %s lack other tags and are left out", tag, missing[:5])
    if not common:
        raise DataFormatError(
            "no volume has a reconstruction under every configured tag",
            recon_dir,
            "reconstruct the same volumes for every tag in data.class_tags",
        )
    return {tag: {v: files[v] for v in sorted(common)} for tag, files in per_tag.items()}


def build_index(
    per_tag: Mapping[str, Mapping[str, Path]],
    class_tags: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    volumes: Sequence[str],
    slice_counts: Mapping[Path, int],
) -> ImageIndex:
    """All slices of `volumes` under every tag of every class, labelled by class order."""
    files: list[Path] = []
    file_index, slice_index, labels, vols = [], [], [], []
    for label, name in enumerate(classes):
        for tag in class_tags[name]:
            for volume in volumes:
                path = per_tag[tag][volume]
                n = slice_counts[path]
                file_index.append(np.full(n, len(files)))
                files.append(path)
                slice_index.append(np.arange(n))
                labels.append(np.full(n, label))
                vols.append(np.full(n, volume, dtype=object))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return ImageIndex(
        files,
        cat(file_index).astype(np.int64),
        cat(slice_index).astype(np.int64),
        cat(labels).astype(np.int64),
        cat(vols).astype(str),
    )


def preload_images(
    index: ImageIndex, crop: Sequence[int], normalization: str, percentile: float
) -> torch.Tensor:
    """Every image of `index`, cropped and normalised, in RAM: (N, 1, H, W) float32."""
    out = torch.empty(len(index), 1, int(crop[0]), int(crop[1]))
    for file_number, path in enumerate(index.files):
        positions = np.flatnonzero(index.file_index == file_number)
        if not len(positions):
            continue
        images = read_reconstruction(path).reconstruction
        rows, cols = center_crop_box(images.shape, crop, str(path))
        block = images[index.slice_index[positions], rows, cols]
        out[torch.from_numpy(positions), 0] = torch.from_numpy(np.ascontiguousarray(block))
    return normalize_images(out, normalization, percentile, inplace=True)
