"""What spatial context costs: building coords + patch features for a simulated DTI cohort.

    PYTHONPATH=src python scripts/bench_context_features.py [--cohort DIR] [--repeats 3]
        [--patch-size 3] [--patch-dilation 1 3 1x1x3] [--train-seconds S]
        [--context-model STAGE1.ckpt]

Reads each subject's maps once (not timed), then times `context_columns` (brain-normalised
coordinates + the k^3 patch of every feature map, tensor ops on whole volumes) over the cohort,
median of `--repeats`. With `--train-seconds` (the fit time of an `experiment=dti_mlp_context`
run on the same cohort) it prints the share of training time (issue 13: under 10 %). With
`--context-model` (a dti_mlp_context best.ckpt) it times the auto-context inputs instead: the
same coords and patches plus the first stage run on every subject's brain mask and the patches
of its log-probability maps (`subject_context`, as experiment=dti_mlp_autocontext builds them).
Timings on a shared 2-core CPU are noisy: compare medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

LABEL_MAP = {
    "thalamus": [10, 49],
    "corpus_callosum": [251, 252, 253, 254, 255],
    "cortical_wm": [2, 41],
}
FEATURES = ["T1w", "FA", "MD", "AD", "RD"]


def _dilation(text: str) -> int | list[int]:
    """`3` -> 3; `1x1x3` -> [1, 1, 3] (data.patch_dilation's per-axis entry)."""
    parts = [int(t) for t in text.split("x")]
    return parts[0] if len(parts) == 1 else parts


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, help="folder of subject folders (default: simulate)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=3)
    parser.add_argument(
        "--patch-dilation",
        type=_dilation,
        nargs="+",
        default=[2],
        help="one patch per dilation; RxAxS per world axis (1x1x3)",
    )
    parser.add_argument("--train-seconds", type=float, help="fit time of the context run")
    parser.add_argument("--context-model", help="first-stage checkpoint: time autocontext too")
    args = parser.parse_args(argv)

    from mrinet.data.tissue.context import ContextSpec, context_columns
    from mrinet.data.tissue.first_stage import assemble_context
    from mrinet.data.tissue.subjects import class_lookup, subject_context, subject_voxels
    from mrinet.io.nifti import load_nifti

    cohort = args.cohort
    if cohort is None:
        from mrinet.sim.dti_cache import ensure_synthetic_cohort

        cohort = ensure_synthetic_cohort(Path("data") / "dti_synthetic", {"subjects": 8})
    lookup = class_lookup(list(LABEL_MAP), LABEL_MAP)
    subjects = []
    for folder in sorted(p for p in Path(cohort).iterdir() if p.is_dir() and p.name[0] != "."):
        _, _, volume = subject_voxels(folder, FEATURES, lookup, "aparc+aseg.nii.gz")
        mask = load_nifti(folder / "nodif_brain_mask.nii.gz", ndim=3)[0] > 0
        subjects.append((folder, volume, mask))
    kinds = ["coords", "patch"] + (["autocontext"] if args.context_model else [])
    spec = assemble_context(
        ContextSpec.from_config(kinds, args.patch_size, args.patch_dilation, args.context_model)
    )
    times, columns = [], 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        columns = 0
        for folder, volume, mask in subjects:
            inside = volume["classes"] >= 0
            if spec.model is not None:
                cols = subject_context(
                    folder, volume["maps"], FEATURES, inside, volume["affine"], spec
                )
            else:
                cols = context_columns(
                    volume["maps"],
                    FEATURES,
                    inside,
                    volume["affine"],
                    kinds,
                    args.patch_size,
                    mask,
                    patch_dilation=args.patch_dilation,
                )
            columns += cols.size
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    n_vox = sum(int((v["classes"] >= 0).sum()) for _, v, _ in subjects)
    print(
        f"context features ({'+'.join(kinds)}, {args.patch_size}^3 patches, dilation "
        f"{' '.join(map(str, args.patch_dilation))}) for "
        f"{len(subjects)} subjects, {n_vox} class voxels, {columns // max(n_vox, 1)} columns: "
        f"median {median:.2f} s of {args.repeats} ({', '.join(f'{t:.2f}' for t in times)})"
    )
    result = {"seconds": median, "voxels": float(n_vox)}
    if args.train_seconds:
        share = median / args.train_seconds
        print(f"= {100 * share:.1f} % of {args.train_seconds:.0f} s training (target < 10 %)")
        result["share"] = share
    return result


if __name__ == "__main__":
    main()
