"""What a reconstruction does, as one validated record: mask, rate, solver, lam rule, noise.

A `ReconProtocol` holds no data and does no I/O: it names the undersampling (mask kind,
acceleration R, fully sampled centre fraction), the solver (method, wavelet, lam or "auto",
iterations) and the reference's noise matching, and its `tag` is the folder name the outputs
go to (`pics_R4`, `sense_equispaced_R8`; `reference`, `reference_matched_R4`). Invalid settings
are refused when the record is made, before any file is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mrinet.errors import ConfigError, check_choice
from mrinet.mri.wavelets import WAVELETS

METHODS = ("pics", "sense", "zero_filled")
MASKS = ("random", "equispaced")
REFERENCE_NOISE = ("none", "matched")
DEFAULT_ITERATIONS = {"pics": 30, "sense": 10, "zero_filled": 0}


def method_tag(method: str, acceleration: float, mask: str = "random") -> str:
    """Folder name of a reconstruction: `pics_R4`, `sense_equispaced_R8`, ..."""
    kind = "" if mask == "random" else f"{mask}_"
    return f"{method}_{kind}R{acceleration:g}"


def reference_tag(reference_noise: str = "none", acceleration: float = 4) -> str:
    """Folder name of the R=1 reference: `reference`, or `reference_matched_R4` when its noise
    is matched to rate R (it then depends on R, so each R gets its own)."""
    return "reference" if reference_noise == "none" else f"reference_matched_R{acceleration:g}"


@dataclass(frozen=True)
class ReconProtocol:
    """One reconstruction protocol (validated on construction; `iterations` None -> the
    method's default). `lam`: a number on the data scaling (pics), or "auto": chosen per
    volume by k-space cross-validation on the accelerated data (mrinet.mri.lam).
    `reference_noise="matched"`: the R=1 reference gets the noise level of an R-fold scan."""

    acceleration: float = 4
    center_fraction: float = 0.08
    method: str = "pics"
    mask: str = "random"
    lam: float | str | None = "auto"
    iterations: int | None = None
    wavelet: str = "db4"
    calib_width: int | None = None
    reference_noise: str = "none"
    recon_size: tuple[int, int] = (320, 320)

    def __post_init__(self) -> None:
        check_choice(self.method, METHODS, "method")
        check_choice(self.mask, MASKS, "mask")
        check_choice(self.reference_noise, REFERENCE_NOISE, "reference_noise")
        _check_rate(self.acceleration, self.center_fraction)
        check_choice(self.wavelet, WAVELETS, "wavelet")
        iterations = DEFAULT_ITERATIONS[self.method] if self.iterations is None else self.iterations
        object.__setattr__(self, "iterations", _checked_iterations(iterations))
        object.__setattr__(self, "lam", _checked_lam(self.lam))
        object.__setattr__(self, "recon_size", tuple(int(n) for n in self.recon_size))
        if self.calib_width is not None:
            object.__setattr__(self, "calib_width", int(self.calib_width))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ReconProtocol:
        """A protocol from keyword settings (a config entry, a CLI); unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigError(
                f"not a reconstruction setting: {', '.join(map(repr, unknown))}",
                "reconstruct_dataset",
                f"use the settings of mrinet.recon.ReconProtocol: {', '.join(sorted(names))}",
            )
        return cls(**settings)

    @property
    def tag(self) -> str:
        """Folder of the accelerated reconstructions (`pics_R4`, `zero_filled_equispaced_R2`)."""
        return method_tag(self.method, self.acceleration, self.mask)

    @property
    def reference_tag(self) -> str:
        """Folder of the R=1 reference made by the same pipeline."""
        return reference_tag(self.reference_noise, self.acceleration)

    @property
    def auto_lam(self) -> bool:
        """Is lam chosen per volume (pics with lam "auto")?"""
        return self.method == "pics" and self.lam == "auto"


def _check_rate(acceleration: float, center_fraction: float) -> None:
    if not acceleration >= 1:
        raise ConfigError(
            f"acceleration {acceleration} < 1: acceleration is (all lines) / (sampled lines)",
            "acceleration",
            "use --acceleration >= 1 (1 = fully sampled, 4 = a quarter of the lines)",
        )
    if not 0 < center_fraction * acceleration <= 1:
        raise ConfigError(
            f"center_fraction {center_fraction} with acceleration {acceleration} is impossible",
            "center_fraction",
            "need center_fraction <= 1 / acceleration",
        )


def _checked_lam(lam: float | str | None) -> float | str:
    """The lam rule: "auto" (None means the same) or a float >= 0."""
    if lam is None or lam == "auto":
        return "auto"
    try:
        value = float(lam)
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0:
        raise ConfigError(
            f"lam {lam!r} is neither a number >= 0 nor 'auto'", "lam", "e.g. lam=0.002 or auto"
        )
    return value


def _checked_iterations(iterations: Any) -> int:
    """A whole number >= 0 (20 or 20.0), as an int."""
    try:
        value = int(iterations)
        whole = value == iterations and not isinstance(iterations, bool)
    except (TypeError, ValueError):
        whole = False
    if not whole or value < 0:
        raise ConfigError(
            f"iterations {iterations!r} is not a whole number >= 0", "iterations", "e.g. 30"
        )
    return value
