"""Simulate fastMRI-style multi-coil k-space volumes (one HDF5 file per volume).

    mrinet-simulate-kspace --out DIR --volumes 20 --slices 16 --coils 8 --seed 0

(also `python -m mrinet.sim.kspace_dataset`, `python scripts/make_kspace_dataset.py`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrinet.cli import console_script, options
from mrinet.sim.kspace_dataset import simulate_kspace_dataset


def main(argv: list[str] | None = None) -> list[Path]:
    """Command line: simulate a k-space dataset (see module docstring)."""
    p = argparse.ArgumentParser(description="Simulate fastMRI-style multi-coil k-space volumes.")
    p.add_argument("--out", required=True, help="output directory (one .h5 per volume)")
    p.add_argument("--volumes", type=int, default=20)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=320, help="image matrix (size x size)")
    p.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[30.0],
        help="mean brain signal / noise std; two values = a range each volume draws from",
    )
    p.add_argument(
        "--contrast",
        choices=["T2w", "T1w"],
        nargs="+",
        default=["T2w"],
        help="one contrast, or several that volumes take in turn",
    )
    p.add_argument(
        "--anatomy",
        default=None,
        help="geometric (the default), mni_aparc (FreeSurfer aparc+aseg + MNI T1) or a "
        "magnitude NIfTI volume",
    )
    p.add_argument("--readout-oversampling", type=int, default=1, choices=[1, 2])
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    paths = simulate_kspace_dataset(
        args.out,
        **options(args, "volumes", "slices", "coils", "seed", "size", "anatomy"),
        snr=args.snr[0] if len(args.snr) == 1 else args.snr,
        contrast=args.contrast[0] if len(args.contrast) == 1 else args.contrast,
        readout_oversampling=args.readout_oversampling,
        progress=not args.no_progress,
    )
    print(f"{len(paths)} volumes in {args.out}")
    return paths


run = console_script(main)


if __name__ == "__main__":
    run()
