"""Benchmark: mrinet pics_reconstruct vs sigpy L1WaveletRecon, 320x320, 8 coils, R=4, CPU.

Same inputs, same iterations, same step and regularisation on the same scaled data; prints
PSNR of both vs the fully sampled coil-combined image, median times per slice, and the speed
ratio (sigpy / ours) as the last line.  Usage: PYTHONPATH=src python scripts/bench_pics.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mrinet.mri import fft2c, ifft2c
from mrinet.mri.coils import espirit_maps
from mrinet.mri.masks import RandomMask
from mrinet.mri.pics import data_scale, pics_reconstruct, zero_filled


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.abs(), ref.abs()
    return float(10 * torch.log10(ref.max() ** 2 / ((x - ref) ** 2).mean()))


def main(argv: list[str] | None = None) -> float:
    """Run the comparison; returns the speed ratio."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--acceleration", type=float, default=4)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--wavelet", default="db4")
    args = p.parse_args(argv)
    import sigpy as sp
    import sigpy.mri as mr

    torch.set_num_threads(args.threads)
    n, c = args.size, args.coils
    rng = np.random.default_rng(0)
    image = torch.from_numpy(sp.shepp_logan((n, n))).to(torch.complex64)
    true_maps = torch.from_numpy(mr.birdcage_maps((c, n, n))).to(torch.complex64)
    kspace = fft2c(true_maps * image)
    noise = rng.standard_normal((2, *kspace.shape)).astype(np.float32) * 0.002
    kspace = (kspace + torch.complex(torch.from_numpy(noise[0]), torch.from_numpy(noise[1])))[None]
    maps = espirit_maps(kspace)
    mask = RandomMask([0.08], [args.acceleration])(kspace.shape, seed=1)
    undersampled = kspace * mask
    reference = (maps.conj() * ifft2c(kspace)).sum(1)[0]
    scale = float(data_scale(zero_filled(undersampled, mask, maps))[0])
    lam = 0.01

    def ours():
        return pics_reconstruct(
            undersampled, mask, maps, lam=lam, iterations=args.iterations, wavelet=args.wavelet
        )[0]

    def theirs():
        app = mr.app.L1WaveletRecon(
            undersampled[0].numpy(),
            maps[0].numpy(),
            lam / scale,
            weights=mask.numpy(),
            max_iter=args.iterations,
            alpha=1.0,
            show_pbar=False,
        )
        return torch.from_numpy(app.run())

    results = {}
    for name, fn in (("mrinet", ours), ("sigpy", theirs)):
        out = fn()  # warm-up (numba/JIT, FFT plans)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        results[name] = (statistics.median(times), _psnr(out, reference))
        print(
            f"{name:7s} median {results[name][0] * 1e3:8.1f} ms/slice  "
            f"({results[name][0] / args.iterations * 1e3:.2f} ms/iteration)  "
            f"PSNR {results[name][1]:.2f} dB"
        )
    print(f"PSNR difference (mrinet - sigpy): {results['mrinet'][1] - results['sigpy'][1]:+.2f} dB")
    ratio = results["sigpy"][0] / results["mrinet"][0]
    print(
        f"speed ratio sigpy/mrinet per slice ({args.iterations} iterations, "
        f"{args.threads} thread(s)): {ratio:.2f}x"
    )
    return ratio


if __name__ == "__main__":
    main()
