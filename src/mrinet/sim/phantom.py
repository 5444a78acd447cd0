"""Digital brain phantom: a FreeSurfer-labelled 3D head with random smooth per-subject deformation.

Axis convention (the same as HCP/FSL storage): array axes are (X, Y, Z) with
X running from the subject's right to left (index 0 = right), Y from posterior to anterior and
Z from inferior to superior. `phantom_affine` gives the matching voxel -> world (RAS+, mm)
matrix, so world x = -voxel_mm * (i - centre) is positive on the right and the left hemisphere
(FreeSurfer codes 2, 3, 4, 10) lies at high X indices.

Anatomy is defined in millimetres on a template brain of real size (cerebrum ~130x160x120 mm)
and scaled uniformly to fit the field of view when the grid is smaller; thin structures (cortex
ribbon, corpus callosum) keep at least ~1.2 voxels of thickness so they exist on coarse grids.

Tissue and label differ where FreeSurfer's do (`make_brain_anatomy`): callosal fibres run
left-right across the midline and on into each hemisphere with callosal FA and diffusivities,
but FreeSurfer labels the corpus callosum (251-255) only in a thin mid-sagittal slab and the
same fibres off it as cerebral white matter (2/41). The simulator draws signals from the tissue
volume and writes the label volume, as a real aparc+aseg would be.
"""

from __future__ import annotations

import numpy as np

from mrinet.sim.anatomy.warp import rotation_matrix

BACKGROUND = 0
CSF = 24
CORTEX = (3, 42)  # (left, right)
WM = (2, 41)
VENTRICLE = (4, 43)
THALAMUS = (10, 49)
CC_SEGMENTS = (251, 252, 253, 254, 255)  # posterior (splenium) .. anterior (genu)

#: Tissue groups used for partial-volume mixing: name -> FreeSurfer codes.
TISSUES: dict[str, tuple[int, ...]] = {
    "background": (BACKGROUND,),
    "csf": (CSF, *VENTRICLE),
    "cortex": CORTEX,
    "wm": WM,
    "thalamus": THALAMUS,
    "cc": CC_SEGMENTS,
}

# template half-extents of the cerebrum and the CSF/skull shell around it (mm)
_BRAIN_SEMI_AXES_MM = np.array([64.0, 80.0, 58.0])
_CSF_SHELL_MM = 3.0
_CORTEX_MM = 3.0
_SULCUS_DEPTH_MM = 9.0
_FISSURE_HALF_MM = 1.0
_CC_HALF_LENGTH_MM = 36.0
_CC_HALF_WIDTH_MM = 12.0
_DEFORM_MM = 3.0


def phantom_affine(shape: tuple[int, int, int], voxel_mm: float) -> np.ndarray:
    """Voxel -> world (RAS+, mm) 4x4 affine; X axis flipped (right to left) as in HCP data."""
    centre = (np.asarray(shape[:3], dtype=np.float64) - 1.0) / 2.0
    affine = np.diag([-voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


def _smooth_noise(shape, coarse: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-scale random field (X, Y, Z) varying on the scale of shape / coarse voxels.

    Coarse Gaussian noise interpolated separably with Gaussian kernels (three small matrix
    products), ~10x cheaper than spline zooming a volume.
    """
    field = rng.standard_normal(coarse)
    for axis, (n, c) in enumerate(zip(shape, coarse)):
        pos = (np.arange(n) + 0.5) / n * c - 0.5  # output positions in coarse-grid units
        w = np.exp(-0.5 * ((pos[:, None] - np.arange(c)[None, :]) / 0.7) ** 2)
        w /= w.sum(axis=1, keepdims=True)
        field = np.moveaxis(np.tensordot(w, field, axes=([1], [axis])), 0, axis)
    return field / max(float(field.std()), 1e-12)


def _template_coords(shape, voxel_mm: float, rng: np.random.Generator):
    """World mm coordinates of every voxel pulled back through a random affine + smooth warp."""
    affine = phantom_affine(shape, voxel_mm)
    ii, jj, kk = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    world = [
        affine[a, 0] * ii + affine[a, 1] * jj + affine[a, 2] * kk + affine[a, 3] for a in range(3)
    ]
    # fit the template (plus shell and deformation margin) into the field of view
    fov_half = np.asarray(shape, dtype=np.float64) * voxel_mm / 2.0
    need = _BRAIN_SEMI_AXES_MM + _CSF_SHELL_MM + 2 * _DEFORM_MM
    fit = float(min(1.0, np.min(fov_half / need) * 1.02))
    # random per-subject size (+-6% per axis), small rotation about each axis (+-5 deg), shift
    scale = fit * rng.uniform(0.94, 1.06, size=3)
    angles = np.deg2rad(rng.uniform(-5.0, 5.0, size=3))
    rot = rotation_matrix(angles)
    inv = np.linalg.inv(rot * scale[None, :])
    shift = rng.uniform(-2.0, 2.0, size=3) * fit
    centred = [w - t for w, t in zip(world, shift)]
    coarse = tuple(max(3, n // 12) for n in shape)
    warp_mm = [_smooth_noise(shape, coarse, rng) * _DEFORM_MM for _ in range(3)]
    p = [sum(inv[a, b] * centred[b] for b in range(3)) + warp_mm[a] for a in range(3)]
    return p, fit


def make_brain_phantom(
    shape: tuple[int, int, int], voxel_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Label volume (X, Y, Z) int32 with FreeSurfer codes; anatomy deformed randomly per `rng`.

    Every callosal voxel is labelled 251-255 here (tissue = label); see `make_brain_anatomy`.
    """
    return make_brain_anatomy(shape, voxel_mm, rng)[0]


def make_brain_anatomy(
    shape: tuple[int, int, int],
    voxel_mm: float,
    rng: np.random.Generator,
    cc_label_half_width_mm: float | None = None,
    cc_label_slab: str = "midline",
) -> tuple[np.ndarray, np.ndarray]:
    """(tissue, labels): two (X, Y, Z) int32 volumes of FreeSurfer codes for one random subject.

    `tissue` says what each voxel is made of (the simulator's signals); `labels` is what
    FreeSurfer's aparc+aseg would say. With `cc_label_half_width_mm`, callosal tissue farther
    than that from the midline is labelled cerebral white matter of its hemisphere; None labels
    all callosal tissue 251-255. `cc_label_slab` says which midline: "midline" (the default)
    the subject's own, warped one, so the slab bends with the anatomy; "plane" a flat slab about
    the least-squares plane through the callosal tissue (left-right position against the other
    two voxel axes), as FreeSurfer's mri_cc labels the 2 x 2 + 1 one-mm slices about the plane
    it fits in a rigidly realigned frame: where the warped midline bends away from the plane,
    the labelled slab sits off-centre in the tissue. The same `rng` draws give the same tissue
    whatever the label slab.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be three sizes >= 4, got {shape}")
    if cc_label_slab not in ("midline", "plane"):
        raise ValueError(
            f"phantom.cc_label_slab must be 'midline' or 'plane', got {cc_label_slab!r} "
            "(e.g. '+data.synthetic.phantom={cc_label_half_width_mm:3.0,cc_label_slab:plane}')"
        )
    (x, y, z), fit = _template_coords(shape, voxel_mm, rng)
    # thin structures keep >= ~1.2 voxels in template millimetres
    vox_t = voxel_mm / fit
    cortex_mm = max(_CORTEX_MM, 1.2 * vox_t)
    shell_mm = max(_CSF_SHELL_MM, 1.2 * vox_t)
    fissure_mm = max(_FISSURE_HALF_MM, 0.6 * vox_t)

    a = _BRAIN_SEMI_AXES_MM
    r = np.sqrt((x / a[0]) ** 2 + (y / a[1]) ** 2 + (z / a[2]) ** 2)
    dist = np.sqrt(x**2 + y**2 + z**2)
    depth_surface = (1.0 - r) * dist / np.maximum(r, 1e-6)  # mm inside the brain surface

    # corpus callosum: an arc over the ventricles, thicker at genu and splenium
    cc_centre_z = 24.5 - 0.006 * y**2
    cc_half_thick = np.maximum(3.0 + 3.0 * (np.abs(y) / _CC_HALF_LENGTH_MM) ** 4, 0.6 * vox_t)
    in_cc_span = np.abs(y) <= _CC_HALF_LENGTH_MM
    cc = (
        in_cc_span
        & (np.abs(z - cc_centre_z) <= cc_half_thick)
        & (np.abs(x) <= _CC_HALF_WIDTH_MM * (1.0 - 0.3 * (np.abs(y) / _CC_HALF_LENGTH_MM) ** 2))
    )
    # interhemispheric fissure: above the callosum, and in front of / behind it
    above_cc = z > cc_centre_z + cc_half_thick + 2.5  # cingulum WM between CC and cortex
    fissure_zone = np.where(in_cc_span, above_cc, z > 0.0)
    depth_medial = np.where(fissure_zone, np.abs(x) - fissure_mm, np.inf)
    depth = np.minimum(depth_surface, depth_medial)

    # gyri: three random plane waves; where they peak, the surface folds in as a sulcus
    fold = np.zeros(shape)
    for _ in range(3):
        k = rng.standard_normal(3)
        k *= 2 * np.pi / (rng.uniform(18.0, 26.0) * np.linalg.norm(k))
        fold += np.cos(k[0] * x + k[1] * y + k[2] * z + rng.uniform(0, 2 * np.pi))
    fold /= 3.0
    sulcus = np.clip((fold - 0.3) / 0.7, 0.0, 1.0) ** 0.5
    depth_eff = depth - _SULCUS_DEPTH_MM * sulcus

    left = x < 0.0  # template x is world-like: positive = right
    labels = np.zeros(shape, dtype=np.int32)
    head = r < 1.0 + shell_mm / a.min()
    labels[head] = CSF
    brain = r < 1.0
    labels[brain & (depth_eff >= cortex_mm)] = WM[1]
    labels[brain & (depth_eff >= 0.0) & (depth_eff < cortex_mm)] = CORTEX[1]

    # lateral ventricles: curved ellipsoids just under the callosum
    vz = 13.0 - 0.004 * y**2
    for side in (-1.0, 1.0):
        vent = ((x - side * 8.0) / 6.0) ** 2 + ((y - 2.0) / 26.0) ** 2 + ((z - vz) / 6.5) ** 2 < 1.0
        labels[vent] = VENTRICLE[1]
        thal = ((x - side * 12.0) / 9.5) ** 2 + ((y + 10.0) / 16.0) ** 2 + ((z + 1.5) / 9.0) ** 2
        labels[(thal < 1.0) & brain] = THALAMUS[1]
    labels[cc & brain] = CC_SEGMENTS[0]

    # left hemisphere codes; CC segments by position along y (posterior -> anterior)
    for right_code, left_code in (WM[::-1], CORTEX[::-1], VENTRICLE[::-1], THALAMUS[::-1]):
        labels[(labels == right_code) & left] = left_code
    seg = np.clip(((y + _CC_HALF_LENGTH_MM) / (2 * _CC_HALF_LENGTH_MM) * 5).astype(int), 0, 4)
    is_cc = labels == CC_SEGMENTS[0]
    labels[is_cc] = np.asarray(CC_SEGMENTS, dtype=np.int32)[seg[is_cc]]
    if cc_label_half_width_mm is None:
        return labels, labels
    # the slab keeps >= ~1.2 voxels so a coarse grid still has a labelled callosum
    if cc_label_slab == "midline":
        off_midline = is_cc & (np.abs(x) > max(float(cc_label_half_width_mm), 0.6 * vox_t))
    else:
        slab_mm = max(float(cc_label_half_width_mm), 0.6 * voxel_mm)
        off_midline = is_cc & (_plane_distance_mm(is_cc, voxel_mm) > slab_mm)
    fs_labels = labels.copy()
    fs_labels[off_midline & left] = WM[0]
    fs_labels[off_midline & ~left] = WM[1]
    return labels, fs_labels


def _plane_distance_mm(is_cc: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Distance (mm) of every voxel (X, Y, Z) to the mid-sagittal plane i = a + b j + c k fitted
    by least squares through the voxels of `is_cc` (X runs left-right)."""
    i, j, k = np.nonzero(is_cc)
    design = np.stack([np.ones(i.size), j, k], axis=1).astype(np.float64)
    (a, b, c), *_ = np.linalg.lstsq(design, i.astype(np.float64), rcond=None)
    ii, jj, kk = np.ogrid[tuple(slice(0, n) for n in is_cc.shape)]
    return np.abs(ii - (a + b * jj + c * kk)) * voxel_mm / np.sqrt(1.0 + b * b + c * c)


def tissue_masks(labels: np.ndarray, tissues: dict[str, tuple[int, ...]] = TISSUES) -> dict:
    """Hard boolean masks per tissue group (X, Y, Z) from a FreeSurfer label volume."""
    return {name: np.isin(labels, codes) for name, codes in tissues.items()}


def tissue_fractions(
    labels: np.ndarray,
    sigma_vox: float = 0.0,
    tissues: dict[str, tuple[int, ...]] = TISSUES,
) -> dict[str, np.ndarray]:
    """Partial-volume fractions per tissue (X, Y, Z) float32, summing to 1 where groups cover all.

    The hard masks are blurred by a Gaussian point-spread of `sigma_vox` voxels (0 = no partial
    volume); since blurring is linear, fractions of a full partition still sum to one per voxel.
    """
    from scipy.ndimage import gaussian_filter

    out = {}
    for name, mask in tissue_masks(labels, tissues).items():
        frac = mask.astype(np.float32)
        if sigma_vox > 0:
            frac = gaussian_filter(frac, sigma=sigma_vox, mode="nearest", truncate=3.0)
        out[name] = frac
    return out
