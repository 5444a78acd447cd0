"""SENSE forward model A = M F S and its adjoint, for parallel-imaging reconstructions.

`sense_forward` / `sense_adjoint` are the plain centred definitions. `SenseOperator` applies the
same A inside iterative solvers without any FFT shift: k-space is kept unshifted and
demodulated (the shifts become a fixed phase on the data, applied once by `from_centered`).
"""

from __future__ import annotations

import itertools
import math

import torch

from mrinet.mri.fft import fft2c, ifft2c

_DIMS = (-2, -1)
# ||A^H A - A_K^H A_K|| <= 1e-5 ||A^H A|| bound: the measured operator error is ~4e-7, the
# float32 rounding of the FFTs alone ~7e-8; PI-CS images move by ~1e-6 relative
DEFAULT_COIL_TOLERANCE = 1e-5


def sense_forward(image: torch.Tensor, coil_maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Image (B, H, W) -> masked multi-coil k-space (B, C, H, W); centred orthonormal FFT."""
    return mask * fft2c(coil_maps * image[:, None])


def sense_adjoint(
    kspace: torch.Tensor, coil_maps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Multi-coil k-space (B, C, H, W) -> coil-combined image (B, H, W): S^H F^H M."""
    return (coil_maps.conj() * ifft2c(mask * kspace)).sum(dim=1)


def _shift_phase(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """exp(2 pi i k (n//2) / n): FFT of an image rolled by ifftshift, relative to the plain FFT."""
    k = torch.arange(n, device=device, dtype=torch.float64)
    return torch.exp(2j * math.pi * k * (n // 2) / n).to(dtype)


class SenseOperator:
    """A = M F S on images (B, H, W) in an unshifted, demodulated k-space frame (B, C, H, W).

    `from_centered(kspace)` maps centred k-space into this frame (once, outside the loop);
    then `forward`/`adjoint` need only plain FFTs. A is the same linear map as
    `sense_forward` up to this fixed unitary change of k-space coordinates.

    Row-wise coil compression of the normal operator (`coil_tolerance` > 0, masks constant
    along H only): then A^H A acts on each image row r separately,
    N_r = sum_c diag(conj S_c[r]) D diag(S_c[r]) with D = F_W^H M F_W (a projection, ||D|| = 1),
    and N_r is unchanged when the coils are mixed by any unitary U_r (C x C):
    sum_c conj(S_c[r, w]) S_c[r, w'] is the (w, w') entry of S_r^H S_r = (U_r S_r)^H (U_r S_r).
    With U_r^H from the eigenvectors of the Gram matrix S_r S_r^H (largest first), the virtual
    coils V_r = U_r^H S_r hold the maps' energy in a few of them (ESPIRiT maps of the 320 x 320
    benchmark: 5-6 of 8 per row at the default tolerance; K is the maximum over the batch).
    Dropping virtual coils k >= K leaves the PSD remainder sum_{k>=K} diag(conj V_k) D diag(V_k),
    whose norm is at most max_w sum_{k>=K} |V_k[r, w]|^2; K is the smallest count that keeps
    this below `coil_tolerance` * `lipschitz()`, so ||A^H A - A_K^H A_K|| <= coil_tolerance *
    lipschitz() per slice. Only `normal` uses the compressed maps (`forward`, `adjoint` and
    `lipschitz` stay exact; truncation can only lower ||A^H A||). 0 keeps every coil unmixed.
    """

    def __init__(
        self,
        coil_maps: torch.Tensor,
        mask: torch.Tensor,
        coil_tolerance: float = DEFAULT_COIL_TOLERANCE,
        row_block: int | None = None,
    ):
        h, w = coil_maps.shape[-2:]
        self.coil_maps = coil_maps
        self.coil_maps_conj = coil_maps.conj_physical()  # a lazy conj view costs 2x per use
        mask = torch.as_tensor(mask, device=coil_maps.device)
        self.mask = torch.fft.ifftshift(mask.to(coil_maps.real.dtype), dim=_DIMS)
        self.full = bool((mask != 0).all())
        # A mask constant along H (1-D phase-encode lines) commutes with the FFT along H, so
        # F^H M F = F_W^H M F_W: the normal operator needs only 1-D FFTs along W
        self.columns = mask.dim() < 2 or mask.shape[-2] == 1
        self.coil_tolerance = float(coil_tolerance)
        self.row_block = row_block
        self._cmask = self.mask.to(coil_maps.dtype)
        self._phase = (
            _shift_phase(h, coil_maps.dtype, coil_maps.device)[:, None]
            * _shift_phase(w, coil_maps.dtype, coil_maps.device)[None, :]
        )
        self._demodulate = self._phase.conj() * self.mask  # mask and shift phase in one factor
        self._lipschitz: torch.Tensor | None = None
        self._normal_maps: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.columns and not self.full:
            self._plan_rows()
        elif not self.full and self.coil_tolerance > 0:
            self._compress_global()

    def _compress_global(self) -> None:
        """2-D masks: the same bound with ONE coil mixing per slice (all pixels), which commutes
        with any mask: sum_c S_c^H F^H M F S_c = sum_k V_k^H F^H M F V_k for V = U^H S, U
        unitary; dropping the weak virtual coils leaves a PSD remainder of norm <= max_pixel
        sum_{k>=K} |V_k|^2, kept below `coil_tolerance` * `lipschitz()` (e.g. the
        cross-validation training mask of `mrinet.mri.lam`). Only `normal` uses them."""
        b, c = self.coil_maps.shape[:2]
        flat = self.coil_maps.reshape(b, c, -1)
        vectors = torch.linalg.eigh(torch.matmul(flat, flat.mH).to(torch.complex128))[1]
        virtual = torch.matmul(vectors.mH.to(flat.dtype), flat)  # weakest first
        tail = torch.view_as_real(virtual * virtual.conj())[..., 0].cumsum(1).amax(dim=-1)
        self._lipschitz = tail[:, -1]  # max over pixels of sum_c |S_c|^2 (mixing keeps it)
        keep = c - int((tail <= self.coil_tolerance * self._lipschitz[:, None]).sum(1).amin())
        if keep < c:
            maps = virtual[:, c - keep :].reshape(b, keep, *self.coil_maps.shape[-2:])
            self._normal_maps = (maps, maps.conj_physical())

    def _plan_rows(self) -> None:
        """Blocks of rows for the 1-D normal operator, each with its (virtual) coil maps.

        Rows where every (kept) coil map is zero (ESPIRiT crops outside the object) are zero in
        A^H A x and are skipped; the rest run in blocks of at most `row_block` rows x C coils
        (default 32 rows on CPU: they stay in cache; all rows on a GPU), fewer coils allowing
        more rows. Each block keeps as many virtual coils as its neediest row (the extra ones
        only make it more exact). The FFTs are unnormalised: the
        1/W of the pair is folded into the mask.
        """
        c, h, w = self.coil_maps.shape[1:]
        if self.coil_tolerance > 0:
            maps, keep, self._lipschitz = _compress_rows(self.coil_maps, self.coil_tolerance)
        else:
            maps = self.coil_maps.transpose(1, 2)  # (B, H, C, W)
            keep = torch.where((maps != 0).any(dim=-1).any(dim=2).any(dim=0), c, 0)
        keep = keep.tolist()
        block = self.row_block or (32 if maps.device.type == "cpu" else h)
        self._blocks = []
        for rows, k in _row_blocks(keep, block * c):
            virtual = maps[:, rows, c - k :].transpose(1, 2).contiguous()
            self._blocks.append((rows, virtual, virtual.conj_physical()))
        self._all_rows = sum(rows.stop - rows.start for rows, _, _ in self._blocks) == h
        self._row_mask = self._cmask / w  # unnormalised FFT pair

    def from_centered(self, kspace: torch.Tensor) -> torch.Tensor:
        """Centred k-space (B, C, H, W) -> the operator's frame, masked."""
        shifted = torch.fft.ifftshift(kspace, dim=_DIMS)  # a copy: safe to scale in place
        if torch.result_type(shifted, self._demodulate) != shifted.dtype:
            return shifted * self._demodulate
        return shifted.mul_(self._demodulate)

    def to_centered(self, kspace: torch.Tensor) -> torch.Tensor:
        """The operator's frame -> centred k-space (B, C, H, W)."""
        return torch.fft.fftshift(kspace * self._phase, dim=_DIMS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image (B, H, W) -> k-space (B, C, H, W) in the operator's frame."""
        kspace = torch.fft.fft2(self.coil_maps * image[:, None], norm="ortho")
        return kspace if self.full else kspace.mul_(self._cmask)

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """K-space (B, C, H, W) in the operator's frame -> image (B, H, W)."""
        if not self.full:
            kspace = kspace * self._cmask
        coil_images = torch.fft.ifft2(kspace, norm="ortho")
        return (coil_images.mul_(self.coil_maps_conj)).sum(dim=1)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """A^H A image (B, H, W) -> (B, H, W); the mask is idempotent, so it is applied once."""
        if self.columns and not self.full:
            return self._normal_rows(image)
        maps, maps_conj = self._normal_maps or (self.coil_maps, self.coil_maps_conj)
        coil_images = maps * image[:, None]
        if self.full:
            return coil_images.mul_(maps_conj).sum(dim=1)
        kspace = torch.fft.fft2(coil_images, norm="ortho").mul_(self._cmask)
        coil_images = torch.fft.ifft2(kspace, norm="ortho")
        return coil_images.mul_(maps_conj).sum(dim=1)

    def _normal_rows(self, image: torch.Tensor) -> torch.Tensor:
        """A^H A for a mask constant along H: 1-D FFTs along W, block of rows by block."""
        out = torch.empty_like(image) if self._all_rows else torch.zeros_like(image)
        for rows, maps, maps_conj in self._blocks:
            coil_images = torch.mul(maps, image[:, None, rows])
            # fresh FFT outputs: torch's `out=` variants copy through a temporary (~30% slower)
            kspace = torch.fft.fft(coil_images, dim=-1).mul_(self._row_mask)
            coil_images = torch.fft.ifft(kspace, dim=-1, norm="forward")
            torch.sum(coil_images.mul_(maps_conj), dim=1, out=out[:, rows])
        return out

    def normal_fft_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The FFTs one `normal` call runs, as (torch.fft function, input shape): the floor an
        iteration cannot beat (scripts/bench_pics.py times them)."""
        if self.full:
            return []
        if self.columns:
            return [(f, tuple(maps.shape)) for _, maps, _ in self._blocks for f in ("fft", "ifft")]
        maps = (self._normal_maps or (self.coil_maps,))[0]
        return [("fft2", tuple(maps.shape)), ("ifft2", tuple(maps.shape))]

    def lipschitz(self) -> torch.Tensor:
        """Upper bound of ||A^H A|| per slice (B,): max over pixels of sum_c |S_c|^2."""
        if self._lipschitz is None:
            maps = self.coil_maps
            power = torch.view_as_real(maps * maps.conj())[..., 0]  # complex abs is ~5x slower
            self._lipschitz = power.sum(dim=1).flatten(1).amax(dim=1)
        return self._lipschitz


def _compress_rows(
    coil_maps: torch.Tensor, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row virtual coils (B, H, C, W), SMALLEST first, the count to keep per row (H,), and
    the Lipschitz bound (B,) (max over pixels of sum_c |S_c|^2, which the mixing preserves).

    The count K is the smallest with max_w sum_{k>=K} |V_k[r, w]|^2 <= tolerance * max over
    pixels of sum_c |S_c|^2, over the whole batch (see `SenseOperator`); the kept coils are the
    last K. The bound is checked on the virtual maps as computed, so it holds whatever the
    rounding of the eigenvectors.
    """
    rows = coil_maps.transpose(1, 2)  # (B, H, C, W)
    gram = torch.matmul(rows, rows.mH)  # S_r S_r^H, (B, H, C, C)
    vectors = torch.linalg.eigh(gram.to(torch.complex128))[1]  # eigenvalues ascending
    virtual = torch.matmul(vectors.mH.to(coil_maps.dtype), rows)  # V_r = U_r^H S_r
    power = torch.view_as_real(virtual * virtual.conj())[..., 0]  # |V|^2 (B, H, C, W)
    # tail[..., j]: max_w of the power of the j + 1 weakest virtual coils
    tail = power.cumsum(2).amax(dim=-1)  # (B, H, C)
    lipschitz = tail[..., -1].amax(dim=1)  # (B,): tail[..., -1] is the power of all coils
    # droppable coils per row: the fewest over the batch (every slice keeps its bound)
    keep = coil_maps.shape[1] - (tail <= tolerance * lipschitz[:, None, None]).sum(2).amin(0)
    return virtual, keep, lipschitz


def _row_blocks(keep: list[int], budget: int) -> list[tuple[slice, int]]:
    """Blocks (rows, coils) covering every row with keep[r] > 0, each with coils >= keep[r].

    Runs of rows needing the same number of coils are cut into balanced blocks of at most
    `budget` row-coils (the work buffer that stays in cache); neighbours are then merged
    (padding the smaller count) where that saves more than the fixed cost of a block, taken
    as budget / 8 row-coils (~8 tensor ops per block on CPU).
    """
    runs, start = [], 0
    for i in range(1, len(keep) + 1):
        if i == len(keep) or keep[i] != keep[start]:
            if keep[start] > 0:
                runs.append((start, i, keep[start]))
            start = i
    blocks: list[tuple[int, int, int]] = []
    for lo, hi, k in runs:
        pieces = -(-(hi - lo) * k // budget)  # ceil
        edges = [lo + (hi - lo) * j // pieces for j in range(pieces + 1)]
        blocks += [(a, b, k) for a, b in itertools.pairwise(edges)]
    fixed = budget // 8
    merged: list[tuple[int, int, int]] = []
    for lo, hi, k in blocks:
        if merged:
            plo, phi, pk = merged[-1]
            both = (hi - plo) * max(k, pk)
            if phi == lo and both <= budget and both < (phi - plo) * pk + (hi - lo) * k + fixed:
                merged[-1] = (plo, hi, max(k, pk))
                continue
        merged.append((lo, hi, k))
    return [(slice(lo, hi), k) for lo, hi, k in merged]
