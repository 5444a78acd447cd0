"""Simulate a DTI cohort on the digital brain phantom: subject folders (flat or HCP layout).

    mrinet-simulate-dti --out DIR --subjects 8 [--layout hcp] [--preset lecture]

(also `python -m mrinet.sim.dti_dataset`, `python scripts/make_dti_dataset.py`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mrinet.cli import console_script
from mrinet.sim.dti_dataset import LAYOUTS, simulate_dti_cohort


def main(argv: list[str] | None = None) -> list[Path]:
    """CLI: simulate a DTI cohort (see scripts/make_dti_dataset.py)."""
    parser = argparse.ArgumentParser(
        description="Simulate DWI subjects on a digital brain phantom, in HCP folder layout."
    )
    parser.add_argument("--out", required=True, help="output directory (one folder per subject)")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--preset", default="literature", choices=["literature", "lecture"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--layout", default="flat", choices=LAYOUTS, help="hcp: <id>/T1w/Diffusion/..."
    )
    parser.add_argument("--scheme", choices=["single_shell", "hcp"], help="override the preset")
    parser.add_argument("--snr", type=float, help="b0 white-matter SNR (Rician)")
    parser.add_argument(
        "--partial-volume", type=float, dest="pv", help="partial-volume sigma in voxels"
    )
    parser.add_argument("--shape", type=int, nargs=3, help="grid X Y Z")
    parser.add_argument("--voxel-mm", type=float, help="isotropic voxel size (mm)")
    parser.add_argument(
        "--anatomy",
        choices=["geometric", "mni_aparc", "auto"],
        help="phantom: mni_aparc (FreeSurfer aparc+aseg + MNI T1, the training default) or "
        "geometric (the ellipsoid phantom; the default here)",
    )
    args = parser.parse_args(argv)
    overrides: dict = {}
    if args.anatomy:
        overrides["phantom"] = {"anatomy": args.anatomy}
    if args.scheme:
        overrides["scheme"] = args.scheme
    if args.snr is not None:
        overrides["snr"] = args.snr
    if args.pv is not None:
        overrides["partial_volume_sigma_vox"] = args.pv
    grid = {}
    if args.shape:
        grid["shape"] = list(args.shape)
    if args.voxel_mm:
        grid["voxel_mm"] = args.voxel_mm
    if grid:
        overrides["grid"] = grid
    t0 = time.perf_counter()
    paths = simulate_dti_cohort(
        args.out, args.subjects, args.seed, args.preset, args.layout, **overrides
    )
    print(f"{len(paths)} subjects in {args.out} ({time.perf_counter() - t0:.1f} s)")
    return paths


run = console_script(main)


if __name__ == "__main__":
    run()
