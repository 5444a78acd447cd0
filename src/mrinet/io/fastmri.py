"""fastMRI-format HDF5: raw multi-coil k-space volumes and reconstruction files.

Raw volume (one file per volume, exactly fastMRI's multicoil layout, so fastMRI's own
`SliceDataset` reads ours and real fastMRI files load here unchanged):
  kspace              complex64 (slices, coils, H, W)   H = readout (may be oversampled, 640)
  reconstruction_rss  float32 (slices, 320, 320)        centre crop of RSS(ifft2c(kspace))
  ismrmrd_header      ISMRMRD XML with encoded/recon matrix sizes and phase-encode limits
  attrs               acquisition, max, norm, patient_id (+ mrinet_simulation JSON for ours)
Reconstruction file `recon/<tag>/<volume>.h5`:
  reconstruction      float32 (slices, 320, 320)
  mask                float32 sampling mask (broadcastable to the k-space slices)
  metrics/{ssim,psnr,nmse}  float64 (slices,) vs the reference (absent for the reference itself)
  attrs               acceleration, center_fraction, method, lam, iterations, ... (JSON-safe)
Uncompressed on purpose: gzip makes reads ~15x slower for ~7% less disk.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrinet.errors import DataFormatError, DataNotFoundError
from mrinet.io.atomic import atomic_file

RECON_SIZE = (320, 320)
_NS = "http://www.ismrm.org/ISMRMRD"


def ismrmrd_header(encoded: tuple[int, int], recon: tuple[int, int], fov_mm=(220.0, 220.0)) -> str:
    """Minimal valid ISMRMRD XML: encoded (readout, phase) and recon sizes, PE limits."""
    ex, ey = encoded
    rx, ry = recon
    fx, fy = fov_mm
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="{_NS}">
  <experimentalConditions><H1resonanceFrequency_Hz>127000000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx * ex / rx:.2f}</x><y>{fy * ey / ry:.2f}</y><z>5.0</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx:.2f}</x><y>{fy:.2f}</y><z>5.0</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{ey - 1}</maximum><center>{ey // 2}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def rss_reference(kspace: np.ndarray, recon_size: tuple[int, int] = RECON_SIZE) -> np.ndarray:
    """(slices, coils, H, W) complex -> centre-cropped RSS of the inverse FFT (slices, h, w) float32."""
    import torch

    # lazy: torch only for an RSS reference; io stays torch-free on import
    from mrinet.mri.fft import center_crop, ifft2c, rss

    k = torch.from_numpy(np.ascontiguousarray(kspace))
    size = (min(recon_size[0], k.shape[-2]), min(recon_size[1], k.shape[-1]))
    return center_crop(rss(ifft2c(k), dim=1), size).numpy().astype(np.float32)


def write_kspace_volume(
    path: str | Path,
    kspace: np.ndarray,
    patient_id: str,
    acquisition: str = "AXT2",
    simulation: dict[str, Any] | None = None,
    recon_size: tuple[int, int] = RECON_SIZE,
) -> Path:
    """Write one fastMRI multicoil file atomically; kspace (slices, coils, H, W) complex."""
    kspace = np.asarray(kspace)
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ValueError(
            f"kspace must be complex (slices, coils, H, W), got {kspace.dtype} {kspace.shape}"
        )
    kspace = kspace.astype(np.complex64, copy=False)
    recon = rss_reference(kspace, recon_size)
    path = Path(path)
    with _hdf5_written_to(path) as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=recon)
        header = ismrmrd_header(kspace.shape[-2:], recon.shape[-2:])
        f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode("utf-8")))
        f.attrs["acquisition"] = acquisition
        f.attrs["max"] = float(recon.max())
        f.attrs["norm"] = float(np.linalg.norm(recon))
        f.attrs["patient_id"] = patient_id
        if simulation is not None:
            f.attrs["mrinet_simulation"] = json.dumps(simulation, sort_keys=True)
    return path


@contextmanager
def _hdf5_written_to(path: Path) -> Iterator[Any]:
    """An h5py.File built in memory, then written to `path` atomically as bytes: a full disk
    is then a plain OSError (atomic_file's DiskFullError) and leaves no HDF5 handle behind (a
    file whose flush failed on a full device crashed the interpreter at exit)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


@dataclass
class KspaceVolume:
    """One raw volume: k-space (slices, coils, H, W) complex64 and what the file says about it."""

    path: Path
    kspace: np.ndarray
    reconstruction_rss: np.ndarray | None
    encoded_size: tuple[int, int]
    recon_size: tuple[int, int]
    attrs: dict[str, Any] = field(default_factory=dict)


def _open(path: Path):
    import h5py

    if not path.is_file():
        raise DataNotFoundError(
            "k-space/reconstruction file not found", path, "check the directory and the file name"
        )
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(
            f"not a readable HDF5 file ({err})",
            path,
            "the file is truncated or not HDF5; regenerate it or re-copy the fastMRI file",
        ) from err


def _dataset(
    f, name: str, path: Path, ndim: int, kind: str, layout: str, missing_fix: str, shape_fix: str
):
    """The HDF5 dataset `name`, checked for presence, rank and dtype kind (errors name the fix)."""
    if name not in f:
        raise DataFormatError(
            f"no '{name}' dataset (found {sorted(f.keys())})", f"{path}:{name}", missing_fix
        )
    ds = f[name]
    if ds.ndim != ndim or ds.dtype.kind != kind:
        raise DataFormatError(
            f"'{name}' is {ds.dtype} with shape {ds.shape}; expected {layout}",
            f"{path}:{name}",
            shape_fix,
        )
    return ds


def _read(f, key: str, path: Path, sl=slice(None)) -> np.ndarray:
    try:
        return f[key][sl]
    except (OSError, KeyError, ValueError) as err:
        raise DataFormatError(
            f"cannot read dataset {key!r} ({err})",
            f"{path}:{key}",
            "the file is truncated or corrupt; delete it and regenerate / re-copy it",
        ) from err


def _header_sizes(f, path: Path, shape) -> tuple[tuple[int, int], tuple[int, int]]:
    """Encoded and recon (x, y) sizes from the ISMRMRD header; defaults when it is absent."""
    from xml.etree import ElementTree

    if "ismrmrd_header" not in f:
        return (shape[-2], shape[-1]), (min(320, shape[-2]), min(320, shape[-1]))
    try:
        root = ElementTree.fromstring(f["ismrmrd_header"][()])
        ns = {"i": _NS}

        def size(space):
            m = root.find(f"i:encoding/i:{space}/i:matrixSize", ns)
            return int(m.find("i:x", ns).text), int(m.find("i:y", ns).text)

        return size("encodedSpace"), size("reconSpace")
    except (ElementTree.ParseError, AttributeError, ValueError) as err:
        raise DataFormatError(
            f"invalid ismrmrd_header XML ({err})",
            f"{path}:ismrmrd_header",
            "write a valid ISMRMRD header (see mrinet.io.fastmri.ismrmrd_header)",
        ) from err


def read_kspace_volume(path: str | Path, slices: slice | None = None) -> KspaceVolume:
    """Read and validate a fastMRI multicoil file (ours or a real one)."""
    path = Path(path)
    with _open(path) as f:
        ds = _dataset(
            f,
            "kspace",
            path,
            ndim=4,
            kind="c",
            layout="complex (slices, coils, H, W)",
            missing_fix="give a fastMRI multicoil file with a complex 'kspace' (slices, coils, H, W)",
            shape_fix="single-coil files have rank 3: simulate or convert to multicoil; store complex64",
        )
        kspace = _read(f, "kspace", path, slices if slices is not None else slice(None))
        rss = None
        if "reconstruction_rss" in f:
            rss_ds = f["reconstruction_rss"]
            if rss_ds.ndim != 3 or rss_ds.shape[0] != ds.shape[0]:
                raise DataFormatError(
                    f"'reconstruction_rss' has shape {rss_ds.shape} but 'kspace' has {ds.shape[0]} slices",
                    f"{path}:reconstruction_rss",
                    "the file is inconsistent; regenerate it",
                )
            rss = _read(
                f, "reconstruction_rss", path, slices if slices is not None else slice(None)
            )
        encoded, recon = _header_sizes(f, path, ds.shape)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return KspaceVolume(path, kspace.astype(np.complex64, copy=False), rss, encoded, recon, attrs)


def write_reconstruction(
    path: str | Path,
    reconstruction: np.ndarray,
    mask: np.ndarray,
    attrs: dict[str, Any],
    metrics: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `recon/<tag>/<volume>.h5` atomically: images (slices, h, w) float32, mask, metrics."""
    reconstruction = np.asarray(reconstruction, dtype=np.float32)
    if reconstruction.ndim != 3:
        raise ValueError(f"reconstruction must be (slices, H, W), got {reconstruction.shape}")
    path = Path(path)
    with _hdf5_written_to(path) as f:
        f.create_dataset("reconstruction", data=reconstruction)
        f.create_dataset("mask", data=np.asarray(mask, dtype=np.float32))
        for name, values in (metrics or {}).items():
            f.create_dataset(f"metrics/{name}", data=np.asarray(values, dtype=np.float64))
        for key, value in attrs.items():
            f.attrs[key] = "none" if value is None else value
    return path


@dataclass
class Reconstruction:
    """One reconstruction file: images (slices, h, w) float32, mask, metrics and solver attrs."""

    path: Path
    reconstruction: np.ndarray
    mask: np.ndarray
    metrics: dict[str, np.ndarray]
    attrs: dict[str, Any]


def read_reconstruction(path: str | Path) -> Reconstruction:
    """Read and validate a reconstruction file written by `write_reconstruction`."""
    path = Path(path)
    with _open(path) as f:
        _dataset(
            f,
            "reconstruction",
            path,
            ndim=3,
            kind="f",
            layout="float (slices, H, W)",
            missing_fix="give a file written by mrinet.reconstruct (recon/<tag>/<volume>.h5)",
            shape_fix="regenerate it with python -m mrinet.reconstruct",
        )
        images = _read(f, "reconstruction", path)
        mask = _read(f, "mask", path) if "mask" in f else np.ones(images.shape[-1], np.float32)
        metrics = {k: _read(f, f"metrics/{k}", path) for k in f.get("metrics", {})}
        for k, v in metrics.items():
            if v.shape != (images.shape[0],):
                raise DataFormatError(
                    f"metric {k!r} has shape {v.shape}, expected ({images.shape[0]},)",
                    f"{path}:metrics/{k}",
                    "regenerate the file",
                )
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return Reconstruction(path, images.astype(np.float32, copy=False), mask, metrics, attrs)
