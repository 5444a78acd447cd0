"""The Fourier-domain shrink W^H soft(W x) for filters longer than Haar (db2, db4).

A periodic filter-and-downsample is, in the Fourier domain, a product and a sum of two
spectrum halves per axis, so a level costs the same few elementwise ops whatever the filter
length, plus the FFTs into and out of the coefficient domain (about four image-sized FFTs per
shrink). Every intermediate lives in buffers planned once per (batch, dtype, device), with
their views made once: a call is ~60 tensor ops, most of them FFTs or in-place multiply-adds
(it was ~180, whose fixed cost was ~0.7 ms of the 2.4 ms spent outside the FFTs at 320 x 320;
docs/benchmarks.md). Tested against the reference DWT and PyWavelets.
"""

from __future__ import annotations

import torch

from mrinet.mri.wavelets.filters import filter_spectrum, periodization_offset, wavelet_filters


class FourierShrink:
    """W^H soft(W x, t) for complex (B, H, W) images zero-padded to `padded` (multiples of
    2**levels) and cropped back to `shape`; buffers kept for the last (batch, dtype, device)."""

    def __init__(self, shape: tuple[int, int], padded: tuple[int, int], levels: int, wavelet: str):
        self.shape, self.padded, self.levels, self.wavelet = shape, padded, levels, wavelet
        self._buffers: dict[tuple, dict] = {}

    def _factors(self, like: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per level, the analysis and synthesis factors of the Fourier-domain shrink.

        Analysis of one axis of length n (coefficient k = sum_m x[m] g[m - 2k], g the
        reconstruction filter shifted by the periodization phase L/2 - 1): C(u) =
        (X(u) conj G(u) + X(u + n/2) conj G(u + n/2)) / 2 for u < n/2, i.e. halves s = 0, 1 of
        the spectrum mixed by conj(G)/2; synthesis: X(u + s n/2) = sum_f C_f(u) G_f(u + s n/2).
        Column factors are (filter or half, v), row factors (filter or half, 1, u, 1): shaped
        for the broadcasts of `__call__`.
        """
        lo, hi = wavelet_filters(self.wavelet)
        offset = periodization_offset(lo.numel())

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype=like.dtype, device=like.device)

        def row_factor(t: torch.Tensor) -> torch.Tensor:
            return cast(t)[:, None, :, None]

        factors, (h, w) = [], self.padded
        for _ in range(self.levels):
            rows = torch.stack([filter_spectrum(f, h, offset) for f in (lo, hi)])
            cols = torch.stack([filter_spectrum(f, w, offset) for f in (lo, hi)])
            rows, cols = rows.reshape(2, 2, h // 2), cols.reshape(2, 2, w // 2)  # (f, s, u)
            analysis_rows, analysis_cols = rows.conj() / 2, cols.conj() / 2
            factors.append(
                {
                    "cols0": cast(analysis_cols[:, 0]),  # (filter, v), spectrum half 0
                    "cols1": cast(analysis_cols[:, 1]),
                    "rows0": row_factor(analysis_rows[:, 0]),  # (filter, 1, u, 1)
                    "rows1": row_factor(analysis_rows[:, 1]),
                    "synth_rows0": row_factor(rows[0]),  # (half, 1, u, 1), low-pass filter
                    "synth_rows1": row_factor(rows[1]),
                    "synth_cols0": cast(cols[0]),  # (half, v)
                    "synth_cols1": cast(cols[1]),
                }
            )
            h, w = h // 2, w // 2
        return factors

    def _plan(self, b: int, like: torch.Tensor) -> dict:
        """Buffers and their views for a batch of b, kept for the last (b, dtype, device) used.

        Level l has a mixing buffer `y` (B, row half, u, column filter, v) and a subband
        buffer `c` (B, row filter, column filter, u, v) = (B, 4, h/2, w/2) holding LL, LH, HL,
        HH spectra; LL's slot is the next level's input and, on the way back, the output of
        the coarser level's synthesis. All coefficients share one flat buffer (finest details
        first, the approximation last), so one soft threshold covers them.
        """
        key = (b, like.dtype, like.device)
        if key in self._buffers:
            return self._buffers[key]
        levels, (h, w) = [], self.padded
        sizes = [3 * (h >> (i + 1)) * (w >> (i + 1)) for i in range(self.levels)]
        coarse = (h >> self.levels, w >> self.levels)
        flat = like.new_empty(b, sum(sizes) + coarse[0] * coarse[1])
        start, previous = 0, None
        for p, size in zip(self._factors(like), sizes):
            h2, w2 = h // 2, w // 2
            y = like.new_empty(b, 2, h2, 2, w2)
            c = like.new_empty(b, 2, 2, h2, w2)
            yt = y.transpose(2, 3)  # (B, row half, column filter, u, v)
            level = dict(p, y=y, c=c, cflat=c.view(b, 4, h2, w2))
            level.update(y0=y[:, :, :, :1], y1=y[:, :, :, 1:], yt0=yt[:, :1], yt1=yt[:, 1:])
            level.update(yt=yt, c0=c[:, :1], c1=c[:, 1:])
            level["details"] = flat[:, start : start + size].view(b, 3, h2, w2)
            level["spectra"] = level["cflat"][:, 1:]
            if previous is not None:  # input: the LL slot of the finer level, by spectrum half
                halves = previous["cflat"][:, 0].view(b, 2, h2, 2, w2)
                level["lo"], level["hi"] = halves[:, :, :, :1], halves[:, :, :, 1:]
                level["target"] = halves
            levels.append(level)
            start, previous, h, w = start + size, level, h2, w2
        parts = torch.view_as_real(flat)
        out = like.new_empty(b, *self.padded)
        n = flat.shape[1]  # == H * W: the threshold's scratch reuses the finest level's
        # buffers (free between analysis and synthesis): a smaller working set in cache
        plan = {
            "levels": levels,
            "flat": flat,
            "parts": parts,
            "squares": torch.view_as_real(levels[0]["y"].view(b, n)),
            "power": torch.view_as_real(out).view(b, 2 * n)[:, :n],
            "factor": levels[0]["c"].view(b, n),
            "coarse": flat[:, start:].view(b, *coarse),
            "ll": previous["cflat"][:, 0],
            "out": out,
            "padded": like.new_zeros(b, *self.padded) if self.padded != self.shape else None,
        }
        levels[0]["target"] = plan["out"].view(b, 2, self.padded[0] // 2, 2, self.padded[1] // 2)
        self._buffers = {key: plan}
        return plan

    def fft_shapes(self, batch: int) -> list[tuple[str, tuple[int, ...]]]:
        """The FFTs one call on `batch` images runs, as (torch.fft function, input shape)."""
        sizes = [(self.padded[0] >> i, self.padded[1] >> i) for i in range(self.levels + 1)]
        details = [(batch, 3, h, w) for h, w in sizes[1:]]
        coarse = (batch, *sizes[-1])
        return [
            ("fft2", (batch, *self.padded)),
            *(("ifft2", shape) for shape in details),
            ("ifft2", coarse),
            ("fft2", coarse),
            *(("fft2", shape) for shape in details),
            ("ifft2", (batch, *self.padded)),
        ]

    def __call__(self, image: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        """Complex (B, H, W), threshold scalar or (B, 1) -> complex (B, H, W), a fresh tensor.

        Each level splits the spectrum (B, h, w) into halves (B, 2, h/2, 2, w/2), mixes them
        with the filter factors (columns, then rows) into the four subband spectra (B, 4, h/2,
        w/2) = LL, LH, HL, HH; one inverse FFT takes the three details to the coefficient
        domain and LL's spectrum feeds the next level as it is. One soft threshold on all
        coefficients, one FFT per level back, and the synthesis mixes in reverse: 2 x levels
        + 4 FFTs in all.
        """
        b = image.shape[0]
        plan = self._plan(b, image)
        if plan["padded"] is not None:
            plan["padded"][:, : self.shape[0], : self.shape[1]] = image
            image = plan["padded"]
        x = torch.fft.fft2(image)  # a fresh output: `out=` FFTs copy through a temporary
        h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
        halves = x.view(b, 2, h2, 2, w2)  # (B, row half, u, column half, v)
        lo, hi = halves[:, :, :, :1], halves[:, :, :, 1:]
        for level in plan["levels"]:
            if "lo" in level:
                lo, hi = level["lo"], level["hi"]
            torch.mul(lo, level["cols0"], out=level["y"]).addcmul_(hi, level["cols1"])
            torch.mul(level["yt0"], level["rows0"], out=level["c"]).addcmul_(
                level["yt1"], level["rows1"]
            )
            torch.fft.ifft2(level["spectra"], out=level["details"])  # LH, HL, HH coefficients
        torch.fft.ifft2(plan["ll"], out=plan["coarse"])
        self._soft_threshold(plan, threshold)
        torch.fft.fft2(plan["coarse"], out=plan["ll"])
        for i in reversed(range(self.levels)):
            level = plan["levels"][i]
            torch.fft.fft2(level["details"], out=level["spectra"])
            torch.mul(level["c0"], level["synth_rows0"], out=level["yt"]).addcmul_(
                level["c1"], level["synth_rows1"]
            )
            torch.mul(level["y0"], level["synth_cols0"], out=level["target"]).addcmul_(
                level["y1"], level["synth_cols1"]
            )
        x = torch.fft.ifft2(plan["out"])
        return x[:, : self.shape[0], : self.shape[1]] if self.padded != self.shape else x

    @staticmethod
    def _soft_threshold(plan: dict, threshold: float | torch.Tensor) -> None:
        """flat *= max(0, 1 - t / |z|) in place.

        Every pass runs on contiguous buffers: ops on the strided real/imaginary views, or a
        complex tensor times a real one (an implicit cast into a fresh temporary), were each
        2-4x slower than these.
        """
        squares, power, factor = plan["squares"], plan["power"], plan["factor"]
        torch.mul(plan["parts"], plan["parts"], out=squares)
        torch.add(squares[..., 0], squares[..., 1], out=power).clamp_min_(1e-30).rsqrt_()
        if isinstance(threshold, torch.Tensor):
            threshold = threshold.reshape(-1, 1)
        power.mul_(threshold).neg_().add_(1).clamp_min_(0)  # max(0, 1 - t / |z|)
        plan["flat"].mul_(factor.copy_(power))
