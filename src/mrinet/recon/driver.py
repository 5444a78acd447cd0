"""Reconstruct files: one volume (resumable), a folder (process pool), one shard of a folder.

Writes `out/<tag>/<volume>.h5` (mrinet.io.fastmri) for the accelerated images and
`out/<reference tag>/<volume>.h5` for their R=1 references (mrinet.recon.problem). Outputs
already there are kept, so a rerun after a crash, a time limit or a cancelled job array
finishes the rest. Real fastMRI geometry (16 coils, 640 x 320/368 with readout
oversampling) is reduced to the 320 x 320 field of view as fastMRI does.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from mrinet.errors import DataNotFoundError
from mrinet.io.fastmri import read_kspace_volume, read_reconstruction, write_reconstruction
from mrinet.mri.masks import seed_from_name
from mrinet.recon.problem import VolumeRecon, quality
from mrinet.recon.protocol import ReconProtocol
from mrinet.recon.shards import parse_shard, select_shard
from mrinet.utils.progress import progress as progress_bar

# settings of a run that are not part of the protocol (they change where and how, not what)
RUN_SETTINGS = ("include_reference", "device")


def volume_outputs(
    kspace_path: Path, out_dir: Path, protocol: ReconProtocol, include_reference: bool = True
) -> dict[str, Path]:
    """{tag: output path} of one volume (the reference first)."""
    name = kspace_path.stem
    outputs = {protocol.tag: out_dir / protocol.tag / f"{name}.h5"}
    if include_reference:
        ref = protocol.reference_tag
        outputs = {ref: out_dir / ref / f"{name}.h5", **outputs}
    return outputs


def reconstruct_file(
    kspace_path: str | Path,
    out_dir: str | Path,
    protocol: ReconProtocol,
    include_reference: bool = True,
    device: str = "cpu",
) -> dict[str, Path]:
    """Reconstruct one volume file; returns {tag: path}. Existing outputs are kept (resumable).

    The mask is seeded by the file's name (mrinet.mri.masks.seed_from_name), so a volume gets
    the same mask in every run and every shard."""
    kspace_path, out_dir = Path(kspace_path), Path(out_dir)
    outputs = volume_outputs(kspace_path, out_dir, protocol, include_reference)
    if all(p.exists() for p in outputs.values()):
        return outputs
    volume = read_kspace_volume(kspace_path)
    kspace = torch.from_numpy(volume.kspace).to(device)
    problem = VolumeRecon(kspace, protocol, seed_from_name(kspace_path.stem), str(kspace_path))
    reference = None
    if include_reference:
        ref_path = outputs[protocol.reference_tag]
        if ref_path.exists():
            reference = torch.from_numpy(read_reconstruction(ref_path).reconstruction)
        else:
            reference, attrs = problem.reference()
            write_reconstruction(ref_path, reference.numpy(), problem.full.cpu().numpy(), attrs)
    if not outputs[protocol.tag].exists():
        image, attrs = problem.accelerated()
        metrics = None if reference is None else quality(reference, image)
        write_reconstruction(
            outputs[protocol.tag], image.numpy(), problem.mask.cpu().numpy(), attrs, metrics
        )
    return outputs


def reconstruct_volume(
    kspace_path: str | Path,
    out_dir: str | Path,
    include_reference: bool = True,
    device: str = "cpu",
    **settings: Any,
) -> dict[str, Path]:
    """`reconstruct_file` with the protocol given as keyword settings (ReconProtocol's fields)."""
    protocol = ReconProtocol.from_settings(settings)
    return reconstruct_file(kspace_path, out_dir, protocol, include_reference, device)


def _volume_job(args: tuple[Path, Path, ReconProtocol, dict[str, Any]]) -> dict[str, Path]:
    torch.set_num_threads(1)  # one thread per worker process: workers share the cores
    kspace_path, out_dir, protocol, run = args
    return reconstruct_file(kspace_path, out_dir, protocol, **run)


def reconstruct_dataset(
    kspace_dir: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
    threads: int | None = 1,
    shard: str | None = None,
    **settings: Any,
) -> dict[str, list[Path]]:
    """Reconstruct every `*.h5` in `kspace_dir` into `out_dir/<tag>/`; returns {tag: paths}.

    `settings`: the protocol (ReconProtocol's fields: acceleration, center_fraction, method,
    mask, lam, iterations, wavelet, calib_width, reference_noise, recon_size) and
    `include_reference`, `device`; all checked before any file is read.
    `shard` "i/n": only the i-th of n disjoint shares of the files (mrinet.recon.shards), for
    one task of a job array; outputs already there are kept, so a rerun finishes the rest.
    `threads` torch threads in this process while it runs (1 by default: per-slice solves are
    small, and oversubscribed cores collapse throughput); use `workers` to use more cores.
    """
    run = {key: settings.pop(key) for key in RUN_SETTINGS if key in settings}
    protocol = ReconProtocol.from_settings(settings)
    if shard:
        parse_shard(shard)  # a bad --shard is reported before any file is looked at
    kspace_dir = Path(kspace_dir)
    files = sorted(kspace_dir.glob("*.h5")) if kspace_dir.is_dir() else []
    if not files:
        raise DataNotFoundError(
            "no k-space files (*.h5)",
            kspace_dir,
            "point --kspace at a folder of fastMRI multicoil files, or simulate one with "
            "scripts/make_kspace_dataset.py",
        )
    if shard:
        files = select_shard(files, shard)
    jobs = [(f, Path(out_dir), protocol, run) for f in files]
    if workers > 1 and run.get("device", "cpu") == "cpu":
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(
                progress_bar(pool.map(_volume_job, jobs), "reconstructing", len(jobs), progress)
            )
    else:
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            results = [
                reconstruct_file(*job[:3], **job[3])
                for job in progress_bar(jobs, "reconstructing", len(jobs), progress)
            ]
        finally:
            torch.set_num_threads(previous)
    out: dict[str, list[Path]] = {}
    for r in results:
        for tag, path in r.items():
            out.setdefault(tag, []).append(path)
    return out
