"""Undersample fastMRI-style k-space and reconstruct it: reference (R=1) and accelerated images.

    mrinet-reconstruct --kspace DIR --out DIR/recon --acceleration 4 \\
        --center-fraction 0.08 --method pics          (or python -m mrinet.reconstruct ...)

Writes `out/<tag>/<volume>.h5` (see mrinet.io.fastmri), the reference by the same pipeline
at R = 1 (mrinet.recon.problem). With `--lam auto` (the default) lam is chosen once per
volume by k-space cross-validation on the accelerated data and reused for the reference;
both files record it (attrs `lam`, `lam_rule`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from mrinet.cli import console_script
from mrinet.mri.wavelets import WAVELETS
from mrinet.recon.driver import reconstruct_dataset
from mrinet.recon.protocol import MASKS, METHODS, REFERENCE_NOISE


def _lam_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lam must be a number or 'auto', got {text!r}"
        ) from None


def parser() -> argparse.ArgumentParser:
    """The command's options (ReconProtocol's fields, and how to run)."""
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
    p.add_argument("--wavelet", choices=list(WAVELETS), default="db4")
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
    return p


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as `reconstruct_dataset` settings (protocol and run), no paths."""
    return {
        "acceleration": args.acceleration,
        "center_fraction": args.center_fraction,
        "method": args.method,
        "mask": args.mask,
        "lam": args.lam,
        "iterations": args.iterations,
        "include_reference": not args.no_reference,
        "calib_width": args.calib_width,
        "wavelet": args.wavelet,
        "workers": args.workers,
        "device": args.device,
        "reference_noise": args.reference_noise,
    }


def main(argv: list[str] | None = None) -> dict[str, list[Path]]:
    """Parse, reconstruct, print one line per tag; returns {tag: paths}."""
    args = parser().parse_args(argv)
    t0 = time.perf_counter()
    out = reconstruct_dataset(
        args.kspace,
        args.out,
        progress=not args.no_progress,
        shard=args.shard,
        **settings_from(args),
    )
    for tag, paths in out.items():
        print(f"{tag}: {len(paths)} files in {Path(args.out) / tag}")
    print(f"done in {time.perf_counter() - t0:.1f} s ({os.cpu_count()} CPUs)")
    return out


run = console_script(main, prefix="error")


if __name__ == "__main__":
    run()
