"""Time the DTI simulator per subject: anatomical (mni_aparc) vs geometric phantom; last line: ratio.

    PYTHONPATH=src python scripts/bench_sim.py [--subjects 2] [--voxel-mm 2.0] [--threads 1]

Times, per subject of the default cohort's settings (literature preset, 2 mm): the atlas work done
once per process (load_atlas), the anatomy alone (pose, warp, 1 mm sampling, partial volume) and
a whole subject written as `make train` writes it (DWI, T1w, labels, tensor fit, NIfTI files).
Seconds depend on the machine's load; the ratio less so.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def _write(out, anatomy: str, subjects: int, voxel_mm: float) -> float:
    """Seconds per subject for writing `subjects` subjects of the cohort."""
    from mrinet.sim.dti_dataset import simulate_dti_cohort

    t0 = time.perf_counter()
    simulate_dti_cohort(
        out, subjects, phantom={"anatomy": anatomy}, grid={"shape": "auto", "voxel_mm": voxel_mm}
    )
    return (time.perf_counter() - t0) / subjects


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--voxel-mm", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mrinet.sim.anatomy.atlas import auto_shape, load_atlas
    from mrinet.sim.anatomy.subject import sample_subject
    from mrinet.sim.anatomy.warp import random_pose

    t0 = time.perf_counter()
    atlas = load_atlas()
    t_atlas = time.perf_counter() - t0
    shape = auto_shape(args.voxel_mm)
    t0 = time.perf_counter()
    for i in range(args.subjects):
        pose = random_pose(np.random.default_rng(i), np.asarray(shape) * args.voxel_mm)
        sample_subject(atlas, pose, shape, args.voxel_mm)
    t_anatomy = (time.perf_counter() - t0) / args.subjects
    with tempfile.TemporaryDirectory() as tmp:
        t_mni = _write(f"{tmp}/mni", "mni_aparc", args.subjects, args.voxel_mm)
        t_geo = _write(f"{tmp}/geo", "geometric", args.subjects, args.voxel_mm)
    n_vox = int(np.prod(shape))
    print(f"grid {shape} at {args.voxel_mm} mm ({n_vox} voxels), {args.subjects} subjects each")
    print(f"atlas (once per process)     {t_atlas:6.2f} s")
    print(f"anatomy per subject          {t_anatomy:6.2f} s (pose, warp, 1 mm sampling)")
    print(f"mni_aparc subject written    {t_mni:6.2f} s (DWI, T1w, labels, fit, NIfTI)")
    print(f"geometric subject written    {t_geo:6.2f} s")
    ratio = t_mni / t_geo
    print(f"mni_aparc / geometric per subject: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
