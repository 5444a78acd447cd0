"""Time mrinet's batched tensor fit against DIPY's TensorModel (b0 + b1000); last line: speed-up."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def make_signal(n_voxels: int, rng: np.random.Generator):
    """Noisy b0 + b1000 (64 dirs, 6 b0) signal of random tensors -> dwi (V, N), bvals, bvecs."""
    dirs = rng.standard_normal((64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bvals = np.concatenate([np.zeros(6), np.full(64, 1000.0)])
    bvecs = np.concatenate([np.zeros((6, 3)), dirs])
    evals = np.sort(rng.uniform(0.2, 2.0, size=(n_voxels, 3)), axis=1)
    q, _ = np.linalg.qr(rng.standard_normal((n_voxels, 3, 3)))
    adc = np.einsum("gi,nij,nj,nkj,gk->ng", bvecs, q, evals, q, bvecs, optimize=True)
    dwi = 1000.0 * np.exp(-bvals / 1000.0 * adc)
    dwi = np.abs(dwi + rng.normal(0, 30.0, size=dwi.shape))
    return dwi.astype(np.float32), bvals, bvecs


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--method", default="wls", choices=["wls", "ols"])
    parser.add_argument("--repeats", type=int, default=3, help="mrinet timings (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    from mrinet.mri.dti import fit_tensor

    dwi, bvals, bvecs = make_signal(args.voxels, np.random.default_rng(0))
    print(
        f"{args.voxels} voxels x {bvals.size} volumes, method={args.method}, "
        f"torch threads={torch.get_num_threads()}"
    )
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = fit_tensor(dwi, bvals, bvecs, method=args.method)
        times.append(time.perf_counter() - t0)
    t_ours = float(np.median(times))
    model = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method=args.method.upper())
    t0 = time.perf_counter()
    ref = model.fit(dwi.astype(np.float64))  # float32 input would make DIPY fit in float32
    t_dipy = time.perf_counter() - t0
    err_fa = float(np.abs(ours.fa.numpy() - ref.fa).max())
    err_md = float(np.abs(ours.md.numpy() - ref.md * 1000.0).max())
    print(f"mrinet {t_ours:.2f} s (median of {args.repeats}), dipy {t_dipy:.2f} s")
    print(f"max |dFA| {err_fa:.1e}, max |dMD| {err_md:.1e} um^2/ms")
    ratio = t_dipy / t_ours
    print(f"speedup {ratio:.1f}x")
    return ratio


if __name__ == "__main__":
    main()
