"""Undersample fastMRI-style k-space and reconstruct it: reference (R=1) and accelerated images.

    python -m mrinet.reconstruct --kspace DIR --out DIR/recon --acceleration 4 \\
        --center-fraction 0.08 --method pics

Writes `out/<tag>/<volume>.h5` (see mrinet.io.fastmri). The reference is made by the SAME
pipeline at R = 1 (same coil maps, coil combination, data scaling, solver, iterations and lam),
so a reference and its accelerated version differ only by acceleration artifacts. With
`--lam auto` (the default) lam is chosen once per volume by k-space cross-validation on the
ACCELERATED data (`mrinet.mri.lam`; R = 1 data hold no unmeasured lines to validate on) and the
same lam, on the shared scaling of the fully sampled data, reconstructs the reference; both
files record it (attrs `lam`, `lam_rule`); a plain RSS
reference would differ in background level too, and a classifier would learn that shortcut.
Real fastMRI geometry (16 coils, 640 x 320/368 with readout oversampling) is reduced to the
320 x 320 field of view as fastMRI does.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from pathlib import Path
from typing import Any

import torch

from mrinet.errors import ConfigError, DataNotFoundError, check_choice
from mrinet.utils.progress import progress as progress_bar

METHODS = ("pics", "sense", "zero_filled")
MASKS = ("random", "equispaced")
DEFAULT_ITERATIONS = {"pics": 30, "sense": 10, "zero_filled": 0}


def method_tag(method: str, acceleration: float, mask: str = "random") -> str:
    """Folder name of a reconstruction: `pics_R4`, `sense_equispaced_R8`, ..."""
    kind = "" if mask == "random" else f"{mask}_"
    return f"{method}_{kind}R{acceleration:g}"


REFERENCE_NOISE = ("none", "matched")


def reference_tag(reference_noise: str = "none", acceleration: float = 4) -> str:
    """Folder name of the R=1 reference: `reference`, or `reference_matched_R4` when its noise
    is matched to rate R (it then depends on R, so each R gets its own)."""
    return "reference" if reference_noise == "none" else f"reference_matched_R{acceleration:g}"


def remove_readout_oversampling(kspace: torch.Tensor, rows: int) -> torch.Tensor:
    """(S, C, H, W) centred k-space, H > rows -> (S, C, rows, W): crop the image along readout."""
    from mrinet.mri.fft import center_crop

    h = kspace.shape[-2]
    if h <= rows:
        return kspace
    hybrid = torch.fft.fftshift(
        torch.fft.ifft(torch.fft.ifftshift(kspace, dim=-2), dim=-2, norm="ortho"), dim=-2
    )
    hybrid = center_crop(hybrid, (rows, kspace.shape[-1]))  # ortho FFTs: image values unchanged
    return torch.fft.fftshift(
        torch.fft.fft(torch.fft.ifftshift(hybrid, dim=-2), dim=-2, norm="ortho"), dim=-2
    )


def _to_recon_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Magnitude (S, H, W) -> centre crop to `size` (no padding where the image is smaller)."""
    from mrinet.mri.fft import center_crop

    h, w = images.shape[-2:]
    return center_crop(images, (min(h, size[0]), min(w, size[1])))


def _solve(method, kspace, mask, maps, lam, iterations, wavelet, scale, source):
    from mrinet.mri.pics import pics_reconstruct, sense_reconstruct, zero_filled

    if method == "pics":
        return pics_reconstruct(
            kspace * mask,
            mask,
            maps,
            lam=lam,
            iterations=iterations,
            wavelet=wavelet,
            scale=scale,
            source=source,
        )
    if method == "sense":
        return sense_reconstruct(kspace * mask, mask, maps, iterations=iterations)
    return zero_filled(kspace * mask, mask, maps)


def reconstruct_volume(
    kspace_path: str | Path,
    out_dir: str | Path,
    acceleration: float = 4,
    center_fraction: float = 0.08,
    method: str = "pics",
    mask: str = "random",
    lam: float | str | None = "auto",
    iterations: int | None = None,
    include_reference: bool = True,
    calib_width: int | None = None,
    wavelet: str = "db4",
    recon_size: tuple[int, int] = (320, 320),
    device: str = "cpu",
    reference_noise: str = "none",
) -> dict[str, Path]:
    """Reconstruct one volume; returns {tag: path}. Existing outputs are kept (resumable).

    `lam` (pics): a number on the data scaling, or "auto"/None: chosen on the accelerated data
    by cross-validation and used for the reference too (module docstring). Non-finite k-space
    raises `DataFormatError` naming the file, slice and coil.

    `reference_noise="matched"` adds complex white noise to the fully sampled k-space before
    the R=1 reconstruction (std per coil estimated from the k-space corners, times
    sqrt(R_realised - 1)), so the reference has the image noise level an unaliased R-fold
    reconstruction would have: the classes then differ by how the missing data are filled in
    (aliasing, g-factor pattern, blur), not by a global noise level (mrinet.mri.noise).
    """
    from mrinet.io.fastmri import read_kspace_volume, read_reconstruction, write_reconstruction
    from mrinet.mri.coils import espirit_maps
    from mrinet.mri.masks import EquispacedMask, RandomMask, center_width, seed_from_name
    from mrinet.mri.metrics import nmse, psnr, ssim
    from mrinet.mri.noise import add_complex_noise, estimate_noise_std, matched_noise_std
    from mrinet.mri.pics import auto_lam, data_scale, require_finite, zero_filled

    kspace_path, out_dir = Path(kspace_path), Path(out_dir)
    name = kspace_path.stem
    tag = method_tag(method, acceleration, mask)
    outputs = {tag: out_dir / tag / f"{name}.h5"}
    ref_tag = reference_tag(reference_noise, acceleration)
    if include_reference:
        outputs = {ref_tag: out_dir / ref_tag / f"{name}.h5", **outputs}
    if all(p.exists() for p in outputs.values()):
        return outputs
    iterations = DEFAULT_ITERATIONS[method] if iterations is None else int(iterations)
    source = str(kspace_path)

    volume = read_kspace_volume(kspace_path)
    kspace = torch.from_numpy(volume.kspace).to(device)
    require_finite(kspace, source)
    kspace = remove_readout_oversampling(kspace, max(recon_size[0], 1))
    mask_fn = (RandomMask if mask == "random" else EquispacedMask)(
        [center_fraction], [acceleration]
    )
    under = mask_fn(kspace.shape, seed=seed_from_name(name)).to(device)
    full = torch.ones_like(under)
    sampled_centre = center_width(under)
    calib = min(24, sampled_centre) if calib_width is None else int(calib_width)
    if calib < 8:
        raise ConfigError(
            f"only {sampled_centre} fully sampled centre lines: too few to estimate coil maps",
            where=f"{kspace_path} (center_fraction={center_fraction})",
            fix="use center_fraction >= 0.04 (>= 8 lines of 320)",
        )
    maps = espirit_maps(kspace * under, calib_width=calib, mask=under, subsample=4)
    # one data scaling for reference and accelerated: that of the fully sampled data
    scale = data_scale(zero_filled(kspace, full, maps))
    lam_rule = "given"
    if method != "pics":
        lam = None
    elif lam is None or lam == "auto":
        choice = auto_lam(kspace * under, under, maps, wavelet=wavelet, scale=scale, source=source)
        lam, lam_rule = (
            choice.lam,
            f"auto: {choice.rule} on R={acceleration:g}, slices {choice.slices}",
        )
    else:
        lam = float(lam)
    attrs_common = {
        "center_fraction": center_fraction,
        "method": method,
        "mask_type": mask,
        "lam": lam,
        "lam_rule": lam_rule if method == "pics" else None,
        "iterations": iterations,
        "wavelet": wavelet,
        "calib_width": calib,
        "source": str(kspace_path),
        "coil_maps": "espirit",
    }
    realised = float(under.numel() / under.sum())
    reference = None
    if include_reference:
        ref_path = outputs[ref_tag]
        if ref_path.exists():
            reference = torch.from_numpy(read_reconstruction(ref_path).reconstruction)
        else:
            ref_attrs = {**attrs_common, "acceleration": 1.0, "realised_acceleration": 1.0}
            ref_kspace = kspace
            if reference_noise == "matched":
                sigma = estimate_noise_std(kspace)
                added = matched_noise_std(sigma, realised)
                generator = torch.Generator().manual_seed(seed_from_name(name) + 1)
                ref_kspace = add_complex_noise(kspace, added, generator)
                ref_attrs |= {
                    "reference_noise": "matched",
                    "noise_matched_acceleration": realised,
                    "estimated_noise_std": sigma.cpu().numpy(),
                    "added_noise_std": added.cpu().numpy(),
                }
            ref = _solve(method, ref_kspace, full, maps, lam, iterations, wavelet, scale, source)
            reference = _to_recon_size(ref.abs(), recon_size).float().cpu()
            write_reconstruction(ref_path, reference.numpy(), full.cpu().numpy(), ref_attrs)
    if not outputs[tag].exists():
        image = _solve(method, kspace, under, maps, lam, iterations, wavelet, scale, source)
        image = _to_recon_size(image.abs(), recon_size).float().cpu()
        metrics = None
        if reference is not None:
            peak = float(reference.max())
            metrics = {
                "ssim": ssim(reference, image, peak).numpy(),
                "psnr": psnr(reference, image, peak).numpy(),
                "nmse": nmse(reference, image).numpy(),
            }
        write_reconstruction(
            outputs[tag],
            image.numpy(),
            under.cpu().numpy(),
            {
                **attrs_common,
                "acceleration": float(acceleration),
                "realised_acceleration": realised,
            },
            metrics,
        )
    return outputs


def _volume_job(args: tuple[Path, Path, dict[str, Any]]) -> dict[str, Path]:
    torch.set_num_threads(1)  # one thread per worker process: workers share the cores
    kspace_path, out_dir, kwargs = args
    return reconstruct_volume(kspace_path, out_dir, **kwargs)


def reconstruct_dataset(
    kspace_dir: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
    threads: int | None = 1,
    shard: str | None = None,
    **volume_args: Any,
) -> dict[str, list[Path]]:
    """Reconstruct every `*.h5` in `kspace_dir` into `out_dir/<tag>/`; returns {tag: paths}.

    `volume_args`: `reconstruct_volume`'s settings (acceleration, center_fraction, method, mask,
    lam, iterations, wavelet, device, reference_noise, ...), checked before any file is read.
    `shard` "i/n": only the i-th of n disjoint shares of the files (mrinet.run.shards), for
    one task of a job array; outputs already there are kept, so a rerun finishes the rest.
    `threads` torch threads in this process while it runs (1 by default: per-slice solves are
    small, and oversubscribed cores collapse throughput); use `workers` to use more cores.
    """
    try:
        bound = inspect.signature(reconstruct_volume).bind(None, None, **volume_args)
    except TypeError as err:
        raise ConfigError(
            f"not a reconstruction setting: {err}",
            "reconstruct_dataset",
            "use the settings of mrinet.reconstruct.reconstruct_volume",
        ) from None
    bound.apply_defaults()
    kwargs = {k: v for k, v in bound.arguments.items() if k not in ("kspace_path", "out_dir")}
    acceleration, center_fraction = kwargs["acceleration"], kwargs["center_fraction"]
    check_choice(kwargs["method"], METHODS, "method")
    check_choice(kwargs["mask"], MASKS, "mask")
    check_choice(kwargs["reference_noise"], REFERENCE_NOISE, "reference_noise")
    if not acceleration >= 1:
        raise ConfigError(
            f"acceleration {acceleration} < 1: acceleration is (all lines) / (sampled lines)",
            "acceleration",
            "use --acceleration >= 1 (1 = fully sampled, 4 = a quarter of the lines)",
        )
    if not 0 < center_fraction * acceleration <= 1:
        raise ConfigError(
            f"center_fraction {center_fraction} with acceleration {acceleration} is impossible",
            "center_fraction",
            "need center_fraction <= 1 / acceleration",
        )
    if shard:
        from mrinet.run.shards import parse_shard

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
        from mrinet.run.shards import select_shard

        files = select_shard(files, shard)
    jobs = [(f, Path(out_dir), kwargs) for f in files]
    results: list[dict[str, Path]] = []
    if workers > 1 and kwargs["device"] == "cpu":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

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
                reconstruct_volume(f, o, **kw)
                for f, o, kw in progress_bar(jobs, "reconstructing", len(jobs), progress)
            ]
        finally:
            torch.set_num_threads(previous)
    out: dict[str, list[Path]] = {}
    for r in results:
        for tag, path in r.items():
            out.setdefault(tag, []).append(path)
    return out


def _lam_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lam must be a number or 'auto', got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> dict[str, list[Path]]:
    """Command line (see module docstring)."""
    p = argparse.ArgumentParser(description="Undersample and reconstruct fastMRI-style k-space.")
    p.add_argument("--kspace", required=True, help="folder of fastMRI multicoil .h5 files")
    p.add_argument("--out", required=True, help="output folder; writes <out>/<tag>/<volume>.h5")
    p.add_argument("--acceleration", type=float, default=4)
    p.add_argument("--center-fraction", type=float, default=0.08)
    p.add_argument("--method", choices=METHODS, default="pics")
    p.add_argument("--mask", choices=MASKS, default="random")
    p.add_argument(
        "--lam",
        type=_lam_arg,
        default="auto",
        help="l1 weight on scaled data (pics), or auto: chosen per volume by k-space "
        "cross-validation on the accelerated data, used for the reference too",
    )
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--wavelet", choices=["haar", "db2", "db4"], default="db4")
    p.add_argument("--calib-width", type=int, default=None)
    p.add_argument("--no-reference", action="store_true", help="skip the R=1 reference")
    p.add_argument(
        "--reference-noise",
        choices=REFERENCE_NOISE,
        default="none",
        help="matched: add noise to the R=1 data so the reference has the noise level of an "
        "R-fold scan (no global noise-level shortcut for a classifier)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel volumes (CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shard", default=None, help="i/n: only shard i of n (a SLURM array task)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = reconstruct_dataset(
        args.kspace,
        args.out,
        acceleration=args.acceleration,
        center_fraction=args.center_fraction,
        method=args.method,
        mask=args.mask,
        lam=args.lam,
        iterations=args.iterations,
        include_reference=not args.no_reference,
        calib_width=args.calib_width,
        wavelet=args.wavelet,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        reference_noise=args.reference_noise,
        shard=args.shard,
    )
    for tag, paths in out.items():
        print(f"{tag}: {len(paths)} files in {Path(args.out) / tag}")
    print(f"done in {time.perf_counter() - t0:.1f} s ({os.cpu_count()} CPUs)")
    return out


if __name__ == "__main__":
    from mrinet.errors import MrinetError

    try:
        main()
    except MrinetError as err:
        raise SystemExit(f"error: {err}") from None
