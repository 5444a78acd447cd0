"""One volume's reconstruction as a problem object, and `reconstruct(kspace, protocol)`.

In the style of sigpy's Apps (`L1WaveletRecon(y, mps, lamda).run()`): `VolumeRecon(kspace,
protocol, seed)` states the problem (readout crop, undersampling mask, ESPIRiT coil maps
from the calibration lines, one data scaling, lam), and `accelerated()` / `reference()` solve
it. The reference is made by the SAME pipeline at R = 1 (same coil maps, coil combination,
data scaling, solver, iterations and lam), so a reference and its accelerated version differ
only by acceleration artifacts. With lam "auto", lam is chosen once per volume by k-space
cross-validation on the ACCELERATED data (`mrinet.mri.lam`; R = 1 data hold no unmeasured
lines to validate on) and the same lam, on the shared scaling of the fully sampled data,
reconstructs the reference; a plain RSS reference would differ in background level too, and
a classifier would learn that shortcut. Tensors in, tensors out: no files (the driver,
`mrinet.recon.driver`, reads and writes them).
"""

from __future__ import annotations

from typing import Any

import torch

from mrinet.errors import ConfigError
from mrinet.mri.coils import espirit_maps
from mrinet.mri.fft import center_crop
from mrinet.mri.masks import EquispacedMask, RandomMask, center_width
from mrinet.mri.metrics import nmse, psnr, ssim
from mrinet.mri.noise import add_complex_noise, estimate_noise_std, matched_noise_std
from mrinet.mri.pics import (
    auto_lam,
    data_scale,
    pics_reconstruct,
    require_finite,
    sense_reconstruct,
    zero_filled,
)
from mrinet.recon.protocol import ReconProtocol


def remove_readout_oversampling(kspace: torch.Tensor, rows: int) -> torch.Tensor:
    """(S, C, H, W) centred k-space, H > rows -> (S, C, rows, W): crop the image along readout."""
    h = kspace.shape[-2]
    if h <= rows:
        return kspace
    hybrid = torch.fft.fftshift(
        torch.fft.ifft(torch.fft.ifftshift(kspace, dim=-2), dim=-2, norm="ortho"), dim=-2
    )
    hybrid = center_crop(hybrid, (rows, kspace.shape[-1]))  # ortho FFTs: image values unchanged
    return torch.fft.fftshift(
        torch.fft.fft(torch.fft.ifftshift(hybrid, dim=-2), dim=-2, norm="ortho"), dim=-2
    )


def to_recon_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Magnitude (S, H, W) -> centre crop to `size` (no padding where the image is smaller)."""
    h, w = images.shape[-2:]
    return center_crop(images, (min(h, size[0]), min(w, size[1])))


class VolumeRecon:
    """The reconstruction problem of one volume: k-space (S, C, H, W) complex, a protocol, and
    the seed of its mask (and of the reference's matched noise, seed + 1).

    Construction crops the readout to `recon_size[0]` rows, draws the mask, estimates coil maps
    from the sampled centre (calib_width lines, default min(24, sampled centre)), fixes one data
    scaling (that of the fully sampled data) and lam. Non-finite k-space raises
    `DataFormatError` naming `source`, slice and coil.
    """

    def __init__(
        self, kspace: torch.Tensor, protocol: ReconProtocol, seed: int, source: str = "k-space"
    ):
        p = self.protocol = protocol
        self.seed, self.source = int(seed), source
        require_finite(kspace, source)
        kspace = self.kspace = remove_readout_oversampling(kspace, max(p.recon_size[0], 1))
        mask_fn = (RandomMask if p.mask == "random" else EquispacedMask)(
            [p.center_fraction], [p.acceleration]
        )
        self.mask = mask_fn(kspace.shape, seed=self.seed).to(kspace.device)
        self.full = torch.ones_like(self.mask)
        sampled_centre = center_width(self.mask)
        calib = min(24, sampled_centre) if p.calib_width is None else p.calib_width
        if calib < 8:
            raise ConfigError(
                f"only {sampled_centre} fully sampled centre lines: too few to estimate coil maps",
                where=f"{source} (center_fraction={p.center_fraction})",
                fix="use center_fraction >= 0.04 (>= 8 lines of 320)",
            )
        self.calib_width = calib
        self.coil_maps = espirit_maps(
            kspace * self.mask, calib_width=calib, mask=self.mask, subsample=4
        )
        # one data scaling for reference and accelerated: that of the fully sampled data
        self.scale = data_scale(zero_filled(kspace, self.full, self.coil_maps))
        self.lam, self.lam_rule = self._lam()
        self.realised_acceleration = float(self.mask.numel() / self.mask.sum())

    def _lam(self) -> tuple[float | None, str | None]:
        p = self.protocol
        if p.method != "pics":
            return None, None
        if not p.auto_lam:
            return float(p.lam), "given"
        choice = auto_lam(
            self.kspace * self.mask,
            self.mask,
            self.coil_maps,
            wavelet=p.wavelet,
            scale=self.scale,
            source=self.source,
        )
        return choice.lam, f"auto: {choice.rule} on R={p.acceleration:g}, slices {choice.slices}"

    def attrs(self) -> dict[str, Any]:
        """What both files record about the protocol and this volume's solver settings."""
        p = self.protocol
        return {
            "center_fraction": p.center_fraction,
            "method": p.method,
            "mask_type": p.mask,
            "lam": self.lam,
            "lam_rule": self.lam_rule,
            "iterations": p.iterations,
            "wavelet": p.wavelet,
            "calib_width": self.calib_width,
            "source": self.source,
            "coil_maps": "espirit",
        }

    def _solve(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The protocol's solver on `kspace * mask` -> magnitude (S, h, w) float32 on the CPU."""
        p, maps = self.protocol, self.coil_maps
        if p.method == "pics":
            image = pics_reconstruct(
                kspace * mask,
                mask,
                maps,
                lam=self.lam,
                iterations=p.iterations,
                wavelet=p.wavelet,
                scale=self.scale,
                source=self.source,
            )
        elif p.method == "sense":
            image = sense_reconstruct(kspace * mask, mask, maps, iterations=p.iterations)
        else:
            image = zero_filled(kspace * mask, mask, maps)
        return to_recon_size(image.abs(), p.recon_size).float().cpu()

    def accelerated(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """The R-fold reconstruction (S, h, w) and its attrs."""
        attrs = {
            **self.attrs(),
            "acceleration": float(self.protocol.acceleration),
            "realised_acceleration": self.realised_acceleration,
        }
        return self._solve(self.kspace, self.mask), attrs

    def reference(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """The R=1 reference (S, h, w) and its attrs; with reference_noise "matched", complex
        white noise is added to the k-space first (std per coil from the k-space corners, times
        sqrt(R_realised - 1)): the classes then differ by how the missing data are filled in,
        not by a global noise level (mrinet.mri.noise)."""
        attrs = {**self.attrs(), "acceleration": 1.0, "realised_acceleration": 1.0}
        kspace = self.kspace
        if self.protocol.reference_noise == "matched":
            sigma = estimate_noise_std(kspace)
            added = matched_noise_std(sigma, self.realised_acceleration)
            generator = torch.Generator().manual_seed(self.seed + 1)
            kspace = add_complex_noise(kspace, added, generator)
            attrs |= {
                "reference_noise": "matched",
                "noise_matched_acceleration": self.realised_acceleration,
                "estimated_noise_std": sigma.cpu().numpy(),
                "added_noise_std": added.cpu().numpy(),
            }
        return self._solve(kspace, self.full), attrs


def quality(reference: torch.Tensor, image: torch.Tensor) -> dict[str, Any]:
    """SSIM, PSNR and NMSE per slice of `image` against `reference` (S, h, w), as numpy."""
    peak = float(reference.max())
    return {
        "ssim": ssim(reference, image, peak).numpy(),
        "psnr": psnr(reference, image, peak).numpy(),
        "nmse": nmse(reference, image).numpy(),
    }


def reconstruct(
    kspace: torch.Tensor, protocol: ReconProtocol, seed: int = 0, source: str = "k-space"
) -> tuple[torch.Tensor, torch.Tensor, dict[str, dict[str, Any]]]:
    """k-space (S, C, H, W) -> (image, reference, attrs): the R-fold reconstruction and the R=1
    reference (S, h, w) float32, and attrs {"image": ..., "reference": ..., "metrics": ...}
    (what the files record; metrics of the image against the reference)."""
    problem = VolumeRecon(kspace, protocol, seed, source)
    reference, reference_attrs = problem.reference()
    image, image_attrs = problem.accelerated()
    attrs = {
        "image": image_attrs,
        "reference": reference_attrs,
        "metrics": quality(reference, image),
    }
    return image, reference, attrs
