"""Reconstruction files opened for lazy reading: crop windows, h5py datasets, plain reads.

The recon-quality loader reads a few slices per batch from files it keeps open (one handle per
process). `mrinet.io.fastmri.read_reconstruction` reads and validates whole files (preloading);
this module holds the open-file side: `open_reconstruction` (the validated h5py dataset),
`ReconFile` (plain `os.preadv` reads at the dataset's verified file offset where the layout
allows, h5py otherwise) and `center_crop_box` (fastMRI's centre-crop rounding).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrinet.errors import DataFormatError

RECON_DATASET = "reconstruction"


def center_crop_box(shape: Sequence[int], crop: Sequence[int], where: str) -> tuple[slice, slice]:
    """Row and column slices of the centred `crop` window of an (H, W) image (fastMRI rounding)."""
    height, width = int(shape[-2]), int(shape[-1])
    ch, cw = int(crop[0]), int(crop[1])
    if ch > height or cw > width:
        raise DataFormatError(
            f"images are {height}x{width}, smaller than the crop {ch}x{cw}",
            where,
            f"set data.crop=[{min(ch, height)},{min(cw, width)}] or reconstruct larger images",
        )
    top, left = (height - ch) // 2, (width - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


class ReconFile:
    """One open reconstruction file: plain reads at the data's file offset where that is valid.

    h5py's per-read selection cost (~0.2 ms) was 6x a 320x320 image's own read. A dataset that
    is contiguous, unfiltered, little-endian float32 and fully allocated is stored as one plain
    array at `dataset.id.get_offset()` (HDF5's documented use: reading it without the library),
    so an image's crop rows are one `os.preadv` into the caller's buffer. The offset is checked
    against an h5py read of the first row at open. Otherwise reads go through h5py.
    """

    def __init__(self, path: Path, crop: Sequence[int]) -> None:
        self.path, self.crop = Path(path), (int(crop[0]), int(crop[1]))
        self.dataset = open_reconstruction(path)
        self.shape = tuple(int(s) for s in self.dataset.shape)
        self.rows, self.cols = center_crop_box(self.shape, self.crop, str(path))
        self.offset: int | None = None
        self.fd: int | None = None
        self._row_block = np.empty(0, dtype=np.float32)
        offset = plain_offset(self.dataset)
        if offset is not None and hasattr(os, "preadv") and self.shape[0] > 0:
            self.fd = os.open(self.path, os.O_RDONLY)
            self.offset = offset
            row = np.empty(self.shape[2], dtype=np.float32)
            if os.preadv(self.fd, [row], offset) != row.nbytes or not np.array_equal(
                row, self.dataset[0, 0], equal_nan=True
            ):
                os.close(self.fd)
                self.fd = self.offset = None
        if self.fd is not None:  # h5py handle no longer needed
            self.dataset.file.close()
            self.dataset = None

    def read_into(self, target: np.ndarray, slice_number: int) -> None:
        """Crop window of one slice into `target` (H, W) float32 contiguous, by one pread."""
        height, width = self.shape[1], self.shape[2]
        full_width = self.cols.stop - self.cols.start == width
        dest = target
        if not full_width:
            if self._row_block.size != self.crop[0] * width:
                self._row_block = np.empty((self.crop[0], width), dtype=np.float32)
            dest = self._row_block
        offset = self.offset + ((slice_number * height) + self.rows.start) * width * 4
        if os.preadv(self.fd, [dest], offset) != dest.nbytes:
            raise DataFormatError(
                f"slice {slice_number} could not be read (file shorter than its header says)",
                self.path,
                "re-create the file",
            )
        if not full_width:
            target[...] = dest[:, self.cols]

    def read_h5(self, slices: np.ndarray) -> np.ndarray:
        """Crop windows of sorted, unique `slices` through h5py: one hyperslab read per run."""
        dataset, rows, cols = self.dataset, self.rows, self.cols
        if dataset.dtype.kind == "c":
            return np.abs(dataset[slices.tolist(), rows, cols]).astype(np.float32)
        block = np.empty((len(slices), *self.crop), dtype=np.float32)
        breaks = np.flatnonzero(np.diff(slices) != 1) + 1
        for run in np.split(np.arange(len(slices)), breaks):
            first, last = int(slices[run[0]]), int(slices[run[-1]]) + 1
            source = np.s_[first:last, rows, cols]
            target = np.s_[int(run[0]) : int(run[-1]) + 1]
            if dataset.dtype == np.float32:
                dataset.read_direct(block, source, target)
            else:
                block[target] = dataset[source]
        return block

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.dataset is not None:
            with contextlib.suppress(Exception):
                self.dataset.file.close()
            self.dataset = None


def plain_offset(dataset) -> int | None:
    """File offset of an h5py dataset stored as one plain little-endian float32 array, else None."""
    if (
        dataset.chunks is not None  # chunked (so possibly filtered) data
        or dataset.external
        or dataset.dtype.str != "<f4"
        or sys.byteorder != "little"
    ):
        return None
    offset = dataset.id.get_offset()
    if offset is None or dataset.id.get_storage_size() != dataset.size * 4:
        return None  # not allocated yet
    return int(offset)


def open_reconstruction(path: str | Path):
    """The `reconstruction` dataset (slices, H, W) of a file, left open for slice reads.

    mrinet.io.fastmri.read_reconstruction reads and validates whole files (used to preload);
    lazy loading needs the open dataset instead, to read a few slices per batch.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(
            f"cannot open HDF5 file ({err})", path, "re-create the file"
        ) from None
    if RECON_DATASET not in handle or handle[RECON_DATASET].ndim != 3:
        keys = list(handle)
        handle.close()
        raise DataFormatError(
            f"no 3-D {RECON_DATASET!r} dataset (slices, H, W); keys: {keys}",
            path,
            "write reconstructions with scripts/reconstruct.py",
        )
    return handle[RECON_DATASET]


def slice_count(path: str | Path) -> int:
    """Number of slices in a reconstruction file (reads the header only)."""
    dataset = open_reconstruction(path)
    try:
        return int(dataset.shape[0])
    finally:
        dataset.file.close()
