"""Benchmark: mrinet pics_reconstruct vs sigpy L1WaveletRecon, 320x320, 8 coils, R=4, CPU.

Same inputs, same iterations, same wavelet, step and regularisation on the same scaled data;
prints PSNR of both vs the fully sampled coil-combined image, median times per slice (the two
run alternately, so load drifts hit both), and the speed ratio (sigpy / ours) as the last line.
Times are process CPU times (both run on one thread): on a shared, loaded machine wall time
also counts the time other processes hold the core; wall-time medians are printed too.
Usage: PYTHONPATH=src python scripts/bench_pics.py [--repeats 5] [--wavelet haar|db4]
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

PSNR_MARGIN_DB = 0.3  # issue 8: PSNR within 0.3 dB of sigpy on the same problem
_WAVELET_NOTE = {
    "haar": (
        "our Haar is periodized and unitary, 6 levels on 320 = 2**6 * 5; sigpy's Wavelet "
        "takes pywt's maximum of 8 levels in mode='zero', whose coarse levels pad odd sizes "
        "(5 -> 3 -> 2), so its W^H soft(W x) is not an exact l1 prox. sigpy with level=6 "
        "gives our PSNR (36.55 dB here; images equal to ~3e-6)"
    ),
}


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.abs(), ref.abs()
    return float(10 * torch.log10(ref.max() ** 2 / ((x - ref) ** 2).mean()))


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> float:
    """Run the comparison; returns the speed ratio."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--acceleration", type=float, default=4)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--wavelet", default="haar", choices=["haar", "db2", "db4"])
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
            wave_name=args.wavelet,
            alpha=1.0,
            show_pbar=False,
        )
        return torch.from_numpy(app.run())

    fns = {"mrinet": ours, "sigpy": theirs}
    outputs = {name: fn() for name, fn in fns.items()}  # warm-up (numba/JIT, FFT plans)
    times: dict[str, list[float]] = {name: [] for name in fns}
    walls: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0, w0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.process_time() - t0)
            walls[name].append(time.perf_counter() - w0)
    results = {}
    for name in fns:
        results[name] = (statistics.median(times[name]), _psnr(outputs[name], reference))
        print(
            f"{name:7s} median {results[name][0] * 1e3:8.1f} ms/slice  "
            f"({results[name][0] / args.iterations * 1e3:.2f} ms/iteration)  "
            f"PSNR {results[name][1]:.2f} dB  (wall {statistics.median(walls[name]) * 1e3:.1f} ms)"
        )
    diff = results["mrinet"][1] - results["sigpy"][1]
    verdict = "ok" if diff >= -PSNR_MARGIN_DB else "WORSE than sigpy"
    print(
        f"PSNR difference (mrinet - sigpy): {diff:+.2f} dB; goal: not worse than sigpy by more "
        f"than {PSNR_MARGIN_DB} dB (>= -{PSNR_MARGIN_DB} dB): {verdict}"
    )
    if diff > PSNR_MARGIN_DB:
        print(f"  higher, not worse: {_WAVELET_NOTE.get(args.wavelet, 'different wavelet levels')}")
    wall_ratio = statistics.median(walls["sigpy"]) / statistics.median(walls["mrinet"])
    print(f"wall-time ratio sigpy/mrinet: {wall_ratio:.2f}x")
    ratio = results["sigpy"][0] / results["mrinet"][0]
    print(
        f"speed ratio sigpy/mrinet per slice (CPU time, {args.iterations} iterations, "
        f"{args.wavelet}, {args.threads} thread(s), load {_load()}): {ratio:.2f}x"
    )
    return ratio


if __name__ == "__main__":
    main()
