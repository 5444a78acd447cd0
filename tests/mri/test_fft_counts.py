"""The FFT lists that scripts/bench_pics.py times as an iteration's floor equal the FFTs the
operator and the shrink really run (counted by torch's profiler, shapes included)."""

from collections import Counter

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mrinet.mri.masks import RandomMask
from mrinet.mri.sense import SenseOperator
from mrinet.mri.wavelets import Wavelet2d


def _ffts_run(fn) -> Counter:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return Counter(
        tuple(e.input_shapes[0]) for e in prof.events() if e.name.startswith("aten::_fft_")
    )


def _listed(shapes) -> Counter:
    return Counter(shape for _, shape in shapes)


def _maps(b, c, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.complex(torch.randn(b, c, n, n, generator=g), torch.randn(b, c, n, n, generator=g))
    return maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()


@pytest.mark.parametrize("kind", ["rows", "2d", "2d-compressed", "full"])
def test_normal_fft_shapes_are_the_ffts_normal_runs(kind):
    b, c, n = 2, 4, 32
    maps = _maps(b, c, n)
    if kind == "rows":
        mask = RandomMask([0.1], [3])((b, c, n, n), seed=0)
    elif kind == "full":
        mask = torch.ones(1, 1, n, n)
    else:
        mask = (torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    op = SenseOperator(maps, mask, 0.3 if kind == "2d-compressed" else 0.0)
    x = torch.randn(b, n, n, dtype=torch.complex64)
    listed = op.normal_fft_shapes()
    assert _ffts_run(lambda: op.normal(x)) == _listed(listed)
    assert (len(listed) == 0) == (kind == "full")


@pytest.mark.parametrize(
    ("name", "shape"), [("db4", (64, 64)), ("db2", (40, 48)), ("haar", (32, 32))]
)
def test_shrink_fft_shapes_are_the_ffts_shrink_runs(name, shape):
    wav = Wavelet2d(shape, name)
    x = torch.randn(3, *shape, dtype=torch.complex64)
    listed = wav.shrink_fft_shapes(3)
    wav.shrink(x, 0.1)  # the first call also builds the filter spectra
    assert _ffts_run(lambda: wav.shrink(x, 0.1)) == _listed(listed)
    assert (len(listed) == 0) == (name == "haar")
