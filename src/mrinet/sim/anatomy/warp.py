"""Per-subject pose of the anatomical phantom: head size, rotation, shift and a smooth
non-folding divergence-free warp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrinet.sim.anatomy.blas import single_threaded_blas


@dataclass
class SmoothWarp:
    """Divergence-free displacement u = curl A (mm) of subject-space points, A a sum of Gaussian
    bumps on a regular lattice.

    div u = 0 keeps every structure's volume to first order (det(I + du/dw) = 1 + O(|du|^2)):
    the warp moves and bends anatomy by a few mm, head size is the pose's scale. Separable, so
    u and its exact derivatives are evaluated on any axis-aligned grid with small matrix
    products; `w -> w + u(w)` is a diffeomorphism where det(I + du/dw) > 0.
    """

    centres: tuple[np.ndarray, np.ndarray, np.ndarray]  # lattice coordinates per axis (mm)
    sigma_mm: float
    coef: np.ndarray  # (3, cx, cy, cz): the potential A's bump heights (mm^2)

    def _weights(self, axis: int, pos: np.ndarray, order: int) -> np.ndarray:
        d = (
            np.asarray(pos, dtype=np.float64)[:, None] - self.centres[axis][None, :]
        ) / self.sigma_mm
        g = np.exp(-0.5 * d * d)
        if order == 1:
            return -d / self.sigma_mm * g
        if order == 2:
            return (d * d - 1.0) / self.sigma_mm**2 * g
        return g

    def _potential(self, comp: int, orders, axes, dtype) -> np.ndarray:
        """d^orders A_comp on the grid of `axes` -> (nx, ny, nz)."""
        wx, wy, wz = (self._weights(a, axes[a], orders[a]).astype(dtype) for a in range(3))
        out = np.tensordot(wx, self.coef[comp].astype(dtype), axes=([1], [0]))  # (nx, cy, cz)
        out = np.tensordot(out, wy, axes=([1], [1]))  # (nx, cz, ny)
        out = np.tensordot(out, wz, axes=([1], [1]))  # (nx, ny, nz)
        return out

    def on_grid(self, axes, deriv_axis: int | None = None, dtype=np.float64) -> np.ndarray:
        """u = curl A (or du/dw_deriv_axis) on the grid of axis coordinates `axes` ->
        (3, nx, ny, nz)."""
        base = [0, 0, 0]
        if deriv_axis is not None:
            base[deriv_axis] += 1

        def d(comp: int, axis: int) -> np.ndarray:
            orders = list(base)
            orders[axis] += 1
            return self._potential(comp, orders, axes, dtype)

        return np.stack([d(2, 1) - d(1, 2), d(0, 2) - d(2, 0), d(1, 0) - d(0, 1)])

    def jacobian_det(self, axes) -> np.ndarray:
        """det(I + du/dw) on the grid of `axes` (nx, ny, nz)."""
        jac = np.stack([self.on_grid(axes, a) for a in range(3)], axis=1)  # (3 comp, 3 axis, ...)
        jac[0, 0] += 1.0
        jac[1, 1] += 1.0
        jac[2, 2] += 1.0
        return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


@dataclass
class SubjectPose:
    """Subject <- template map: template p = linear^-1 (w + u(w) - shift), w subject mm."""

    linear: np.ndarray  # (3, 3) template -> subject: rotation @ diag(scale)
    shift: np.ndarray  # (3,) mm
    warp: SmoothWarp | None = None

    @property
    def scale(self) -> float:
        """Volume ratio subject / template of the linear part."""
        return float(abs(np.linalg.det(self.linear)))


def identity_pose() -> SubjectPose:
    """No move: the subject is the atlas."""
    return SubjectPose(np.eye(3), np.zeros(3), None)


def rotation_matrix(angles_rad) -> np.ndarray:
    """(3, 3) rotation: about x, then y, then z by `angles_rad` (the phantoms' pose)."""
    rot = np.eye(3)
    for axis, ang in enumerate(angles_rad):
        c, s = np.cos(ang), np.sin(ang)
        a, b = [ax for ax in range(3) if ax != axis]
        r = np.eye(3)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        rot = rot @ r
    return rot


def random_pose(
    rng: np.random.Generator,
    fov_mm,
    deform_mm: float = 2.0,
    lattice_mm: float = 20.0,
    sigma_mm: float = 16.0,
    min_jacobian: float = 0.5,
    check_mm: float = 4.0,
) -> SubjectPose:
    """A random head: size (MNI brains are ~5 % larger than most adults'), rotation, shift and a
    smooth warp of `deform_mm` rms per axis, shrunk until det(I + du/dw) >= `min_jacobian` on a
    `check_mm` grid over the field of view (no folding)."""
    with single_threaded_blas():
        return _random_pose(rng, fov_mm, deform_mm, lattice_mm, sigma_mm, min_jacobian, check_mm)


def _random_pose(rng, fov_mm, deform_mm, lattice_mm, sigma_mm, min_jacobian, check_mm):
    size = 0.95 * float(np.exp(np.clip(rng.normal(0.0, 0.035), -0.07, 0.07)))
    scale = size * rng.uniform(0.98, 1.02, size=3)
    angles = np.deg2rad(rng.uniform(-6.0, 6.0, size=3))
    linear = rotation_matrix(angles) * scale[None, :]
    shift = rng.uniform(-4.0, 4.0, size=3)
    if not deform_mm > 0:
        return SubjectPose(linear, shift, None)
    half = np.asarray(fov_mm, dtype=np.float64) / 2.0
    centres = tuple(np.arange(-h - lattice_mm, h + lattice_mm + 1e-9, lattice_mm) for h in half)
    coef = rng.standard_normal((3, *(c.size for c in centres)))
    warp = SmoothWarp(centres, float(sigma_mm), coef)
    axes = tuple(np.arange(-h, h + 1e-9, check_mm) for h in half)
    rms = float(np.sqrt(np.mean(warp.on_grid(axes) ** 2)))
    warp.coef *= deform_mm / max(rms, 1e-12)
    for _ in range(50):
        if float(warp.jacobian_det(axes).min()) >= min_jacobian:
            break
        warp.coef *= 0.8
    else:  # pragma: no cover - 0.8^50 of any field is ~1e-5 mm
        raise RuntimeError("could not draw a non-folding warp")
    return SubjectPose(linear, shift, warp)
