"""NIfTI maps and label volumes: validated reads, atomic writes."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.atomic import atomic_file


def load_nifti(path: str | Path, ndim: int | None = None, dtype=np.float32):
    """Read a NIfTI (or FreeSurfer .mgz) image -> (array, affine 4x4); `ndim` checks 3D maps."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            "NIfTI file not found", path, "check the subject folder and the configured file names"
        )
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except (
        OSError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        ValueError,
        nib.filebasedimages.ImageFileError,
    ) as err:
        raise DataFormatError(
            f"cannot read NIfTI: {diagnose_nifti(path)} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]})",
            path,
            "re-export or re-copy the image (a .nii or .nii.gz NIfTI-1/2 file); "
            "a truncated file usually means an interrupted copy or download",
        ) from err
    if ndim is not None:
        if ndim == 3 and data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != ndim:
            raise DataFormatError(
                f"expected a {ndim}D image, got shape {data.shape}",
                path,
                "give one 3D volume per map (split 4D series first)"
                if ndim == 3
                else f"give a {ndim}D image",
            )
    return data, np.asarray(img.affine, dtype=np.float64)


def diagnose_nifti(path: str | Path) -> str:
    """Why a NIfTI file cannot be read, in words: truncated/corrupt gzip, no NIfTI header, short data."""
    path = Path(path)
    head = b""
    with open(path, "rb") as handle:
        opener = gzip.open if handle.read(2) == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(544)
            while handle.read(1 << 20):  # stream to the end: a truncated gzip fails here
                pass
    except EOFError:
        return "truncated gzip stream (the file ends early)"
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        if not head:
            return f"corrupt gzip data ({err})"
        return f"corrupt gzip stream ({err})"
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return "NIfTI-1 header, but the image data is incomplete or unreadable"
    if len(head) >= 8 and head[4:7] in (b"n+2", b"ni2"):
        return "NIfTI-2 header, but the image data is incomplete or unreadable"
    if len(head) < 348:
        return f"only {len(head)} bytes: truncated, or not a NIfTI image"
    return "not a NIfTI image (no NIfTI magic in the header)"


def _fortran_order(arr: np.ndarray) -> np.ndarray:
    """`arr` as a Fortran-ordered array (NIfTI's order); a C-ordered 4D series is transposed in
    two torch passes (volume axis first, then each volume), 2x faster than numpy's one pass."""
    if arr.ndim != 4 or not arr.flags.c_contiguous or arr.flags.f_contiguous:
        return np.asfortranarray(arr)
    import torch  # lazy: start-up, only 4D writes need it

    x, y, z, n = arr.shape
    try:
        series = torch.from_numpy(arr)
    except TypeError:  # a dtype torch lacks (uint16 on old torch): numpy's one pass
        return np.asfortranarray(arr)
    by_volume = series.reshape(-1, n).t().contiguous().reshape(n, x, y, z)
    return by_volume.permute(0, 3, 2, 1).contiguous().numpy().T


MGH_DTYPES = (np.uint8, np.int16, np.int32, np.float32)  # what FreeSurfer's .mgz can hold


def save_nifti(path: str | Path, data, affine, dtype=None, fast_gzip: bool = False) -> Path:
    """Write `data` with `affine` to `path` atomically (temporary name, then rename).

    A `.mgz` path writes FreeSurfer's MGH format instead (integers as int32, floats float32).
    `fast_gzip=True` gzips a `.nii.gz` with run-length matching only (zlib's Z_RLE): on a
    simulated DWI series (noise inside the head, zeros outside) ~2x faster than nibabel's level 1
    and 5 % smaller; any gzip reader reads it.
    """
    import nibabel as nib

    path = Path(path)
    arr = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    if path.name.endswith(".mgz"):
        if arr.dtype.type not in MGH_DTYPES:
            arr = arr.astype(np.int32 if arr.dtype.kind in "iub" else np.float32)
        img = nib.MGHImage(arr, np.asarray(affine, dtype=np.float64))
        suffix = ".mgz"
    else:
        img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
        img.header.set_xyzt_units("mm", "sec")
        suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    if fast_gzip and suffix == ".nii.gz":
        # Fortran order: nibabel then writes contiguous slices instead of gathering strided ones
        img = nib.Nifti1Image(_fortran_order(arr), img.affine, img.header)
        packer = zlib.compressobj(1, zlib.DEFLATED, 31, 9, zlib.Z_RLE)  # wbits 31: gzip
        raw = img.to_bytes()
        with atomic_file(path) as tmp:
            with open(tmp, "wb") as handle:
                step = 1 << 24
                for start in range(0, len(raw), step):
                    handle.write(packer.compress(memoryview(raw)[start : start + step]))
                handle.write(packer.flush())
        return path
    with atomic_file(path) as tmp:
        tmp_named = tmp.with_name(tmp.name + suffix)  # nibabel picks compression from the suffix
        try:
            nib.save(img, str(tmp_named))
            tmp_named.replace(tmp)
        finally:
            tmp_named.unlink(missing_ok=True)  # a failed write (full disk) leaves no temporary
    return path
