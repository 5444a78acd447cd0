"""Spatial context features: coordinates in a brain frame, k x k x k patches from whole volumes."""

from __future__ import annotations

import numpy as np
import pytest

from mrinet.data.tissue.columns import (
    input_columns,
    mirror_columns,
    parse_context,
    patch_offsets,
)
from mrinet.data.tissue.context import ContextSpec, context_columns
from mrinet.data.tissue.geometry import brain_coords, patch_columns
from mrinet.errors import ConfigError, DataFormatError, DataNotFoundError


def _flip_x(affine: np.ndarray, nx: int) -> np.ndarray:
    """The affine of the same image stored with its first array axis reversed."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, nx - 1
    return affine @ flip


@pytest.mark.parametrize("dilation", [1, 2])
def test_patch_features_equal_an_explicit_loop_on_a_tiny_volume(dilation):
    rng = np.random.default_rng(0)
    volumes = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    inside = rng.random((5, 4, 6)) < 0.5
    affine = np.diag([1.0, 1.0, 1.0, 1.0])  # array axes = world axes: offsets are array offsets
    got = patch_columns(volumes, inside, affine, 3, dilation)
    d = dilation
    padded = np.pad(volumes, ((0, 0), (d, d), (d, d), (d, d)))  # zeros outside the volume
    expected = []
    for i, j, k in np.argwhere(inside):
        row = []
        for f in range(2):
            for a, b, c in patch_offsets(3):
                row.append(padded[f, i + d + a * d, j + d + b * d, k + d + c * d])
        expected.append(row)
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float32))
    assert got.shape == (inside.sum(), 2 * 26)


@pytest.mark.parametrize("dilations", [[1, 3], [1, 2, 4], [1, [1, 1, 3]]])
def test_multi_scale_patch_features_equal_an_explicit_loop_on_a_tiny_volume(dilations):
    rng = np.random.default_rng(3)
    volumes = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    inside = rng.random((5, 4, 6)) < 0.5
    got = patch_columns(volumes, inside, np.eye(4), 3, dilations)
    per_axis = [[d] * 3 if isinstance(d, int) else d for d in dilations]
    offsets = []  # every patch's offsets in turn, each neighbour once
    for dr, da, ds in per_axis:
        for a, b, c in patch_offsets(3):
            if (a * dr, b * da, c * ds) not in offsets:
                offsets.append((a * dr, b * da, c * ds))
    r = 4  # >= every reach: zeros outside the volume
    padded = np.pad(volumes, ((0, 0), (r, r), (r, r), (r, r)))
    expected = [
        [padded[f, i + r + a, j + r + b, k + r + c] for f in range(2) for a, b, c in offsets]
        for i, j, k in np.argwhere(inside)
    ]
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float32))
    names = input_columns(["FA", "MD"], "patch", 3, dilations)
    assert got.shape == (inside.sum(), len(names) - 2)
    assert names[2:] == [f"{f}[{a:+d},{b:+d},{c:+d}]" for f in ("FA", "MD") for a, b, c in offsets]
    assert len(set(names)) == len(names)


def test_per_axis_dilation_shares_no_column_with_the_isotropic_patch():
    # [1, [1, 1, 3]]: the second patch's S = 0 plane is the first patch's; 26 + 18 neighbours
    assert len(input_columns(["FA"], "patch", 3, [1, [1, 1, 3]])) == 1 + 26 + 18
    assert "FA[+1,+0,+3]" in input_columns(["FA"], "patch", 3, [1, [1, 1, 3]])


def test_mirrored_columns_equal_the_columns_of_the_flipped_volume():
    rng = np.random.default_rng(5)
    volumes = rng.standard_normal((2, 7, 5, 6)).astype(np.float32)
    inside = rng.random((7, 5, 6)) < 0.5
    dilations = [1, [2, 1, 2]]
    cols = patch_columns(volumes, inside, np.eye(4), 3, dilations)
    flipped = patch_columns(volumes[:, ::-1].copy(), inside[::-1], np.eye(4), 3, dilations)
    names = input_columns(["FA", "MD"], ["coords", "patch"], 3, dilations)
    order, sign = mirror_columns(names)
    assert sign[names.index("coord_R")] == -1 and sign[names.index("coord_A")] == 1
    patch_order = order[5:] - 5  # the patch block, without the features and coords
    # voxel (i, j, k) of the flipped volume is voxel (6 - i, j, k); argwhere orders differ
    idx = np.argwhere(inside)
    idx_flipped = np.argwhere(inside[::-1])
    idx_flipped[:, 0] = 6 - idx_flipped[:, 0]
    key = lambda idx: np.lexsort(idx.T[::-1])  # noqa: E731
    np.testing.assert_array_equal(cols[key(idx)][:, patch_order], flipped[key(idx_flipped)])


def test_a_list_of_one_dilation_equals_the_int_form():
    rng = np.random.default_rng(4)
    volumes = rng.standard_normal((2, 6, 5, 7)).astype(np.float32)
    inside = rng.random((6, 5, 7)) < 0.5
    np.testing.assert_array_equal(
        patch_columns(volumes, inside, np.eye(4), 3, [2]),
        patch_columns(volumes, inside, np.eye(4), 3, 2),
    )
    assert input_columns(["FA"], "patch", 3, [2]) == input_columns(["FA"], "patch", 3, 2)
    one, listed = ContextSpec.from_config("patch", 3, 2), ContextSpec.from_config("patch", 3, [2])
    assert one == listed and listed.dilation_setting == 2  # the voxel cache key of the int form
    assert ContextSpec.from_config("patch", 3, [1, 3]).dilation_setting == [1, 3]
    assert ContextSpec.from_config("patch", 3, [1, [1, 1, 3]]).dilation_setting == [1, [1, 1, 3]]


def test_input_columns_count_one_patch_per_dilation():
    assert len(input_columns(["FA", "MD"], ["coords", "patch"], 3, [1, 3])) == 2 + 3 + 2 * 2 * 26
    assert len(input_columns(["FA", "MD"], ["coords", "patch"], 3)) == 2 + 3 + 2 * 26


@pytest.mark.parametrize(
    ("dilation", "message"),
    [
        ([], "empty list"),
        ([1, 0], "not an integer >= 1"),
        (0, "not an integer >= 1"),
        ([1, 1.5], "not an integer >= 1"),
        ("two", "not an integer >= 1"),
        ([3, 3], "repeats"),
        ([1, 1, 3], "repeats"),  # three isotropic patches; one per-axis patch nests: [[1,1,3]]
        ([[1, 3]], "nor three of them"),
        ([[1, 0, 3]], "nor three of them"),
    ],
)
def test_bad_patch_dilations_name_the_key_and_the_fix(dilation, message):
    with pytest.raises(ConfigError, match=message) as info:
        ContextSpec.from_config(["coords", "patch"], 3, dilation)
    assert "data.patch_dilation" in str(info.value) and "data.patch_dilation=[1,[1,1,3]]" in str(
        info.value
    )


def test_coords_and_patches_are_invariant_to_a_flip_of_the_affine_sign_convention():
    rng = np.random.default_rng(1)
    shape = (9, 8, 7)
    mask = np.zeros(shape, bool)
    mask[2:8, 1:7, 1:6] = True
    volume = rng.standard_normal(shape).astype(np.float32)
    fsl = np.diag([-1.25, 1.25, 1.25, 1.0])  # HCP/FSL: x runs right to left
    fsl[:3, 3] = [40.0, -30.0, -20.0]
    ras = _flip_x(fsl, shape[0])  # the same anatomy stored left to right
    a = brain_coords(fsl, mask)
    b = brain_coords(ras, mask[::-1])
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-6)
    # brain-normalised: centred on the mask, unit spread along each world axis
    np.testing.assert_allclose(a[:, mask].mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(a[:, mask].std(1), 1.0, atol=1e-5)
    pa = patch_columns(volume[None], mask, fsl, 3)
    pb = patch_columns(volume[None, ::-1].copy(), mask[::-1], ras, 3)
    order_a = np.argwhere(mask)
    order_b = np.argwhere(mask[::-1])
    order_b[:, 0] = shape[0] - 1 - order_b[:, 0]  # the same voxels in the first storage
    key = lambda idx: np.lexsort(idx.T[::-1])  # noqa: E731
    np.testing.assert_array_equal(pa[key(order_a)], pb[key(order_b)])


def test_brain_axes_turn_with_a_tilted_head():
    from mrinet.data.tissue.geometry import brain_axes

    rng = np.random.default_rng(2)
    points = rng.standard_normal((3, 5000)) * np.array([[60.0], [75.0], [55.0]])  # R, A, S
    points -= points.mean(1, keepdims=True)
    angle = np.deg2rad(6.0)
    tilt = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    axes, spread = brain_axes(points)
    tilted_axes, tilted_spread = brain_axes(tilt @ points)
    np.testing.assert_allclose(tilted_axes.T @ (tilt @ points), axes.T @ points, atol=1e-6)
    np.testing.assert_allclose(tilted_spread, spread, rtol=1e-9)


def test_context_columns_stack_coords_then_patch_in_name_order():
    shape = (6, 6, 6)
    maps = {"FA": np.arange(216, dtype=np.float32).reshape(shape), "MD": np.ones(shape, np.float32)}
    inside = np.zeros(shape, bool)
    inside[2:4, 2:4, 2:4] = True
    cols = context_columns(maps, ["FA", "MD"], inside, np.eye(4), ["patch", "coords"], 3, inside)
    names = input_columns(["FA", "MD"], ["patch", "coords"], 3)
    assert names[:5] == ["FA", "MD", "coord_R", "coord_A", "coord_S"] and names[5] == "FA[-1,-1,-1]"
    assert cols.shape == (8, len(names) - 2)
    assert context_columns(maps, ["FA"], inside, np.eye(4), "none").shape == (8, 0)


@pytest.mark.parametrize(
    ("mask", "error", "message"),
    [
        (None, DataNotFoundError, "needs a brain mask"),
        (np.zeros((4, 4, 4)), DataFormatError, "empty"),
    ],
)
def test_coords_without_a_brain_mask_name_the_file_and_the_fix(mask, error, message):
    with pytest.raises(error, match=message) as info:
        brain_coords(np.eye(4), mask, "/data/sub-1/nodif_brain_mask.nii.gz")
    assert "nodif_brain_mask" in str(info.value) and "data.context=none" in str(info.value)


@pytest.mark.parametrize(("k", "message"), [(4, "odd"), (0, "odd"), (7, "larger than the volume")])
def test_bad_patch_sizes_name_the_key(k, message):
    with pytest.raises(ConfigError, match=message) as info:
        patch_columns(np.zeros((1, 6, 6, 6), np.float32), np.ones((6, 6, 6), bool), np.eye(4), k)
    assert "data.patch_size" in str(info.value)


def test_unknown_context_names_the_key():
    assert parse_context("none") == () and parse_context(["patch", "coords"]) == ("coords", "patch")
    with pytest.raises(ConfigError, match=r"data\.context"):
        parse_context(["coord"])


def test_autocontext_columns_follow_the_patches_and_mirror_like_them():
    names = input_columns(["FA"], ["coords", "patch", "autocontext"], 3, [1, 2], ["thalamus", "wm"])
    own = 1 + 3 + 2 * 26
    assert names[own : own + 2] == ["logp_thalamus", "logp_wm"]
    assert names[own + 2] == "logp_thalamus[-1,-1,-1]" and len(names) == own + 2 * (1 + 2 * 26)
    other_names = input_columns(["FA"], ["coords", "patch", "autocontext"], 3, [1, 2], ["a", "b"])
    assert len(other_names) == len(names)
    order, sign = mirror_columns(names)
    assert names[order[names.index("logp_wm[+2,-2,+0]")]] == "logp_wm[-2,-2,+0]"
    assert order[names.index("logp_wm")] == names.index("logp_wm") and sign.min() == -1


def test_autocontext_needs_a_first_stage_and_a_first_stage_needs_autocontext(tmp_path):
    with pytest.raises(ConfigError, match="needs a trained first-stage classifier") as info:
        ContextSpec.from_config(["coords", "autocontext"], 3, 1)
    assert info.value.where == "data.context_model"
    assert "experiment=dti_mlp_context" in info.value.fix
    with pytest.raises(ConfigError, match="does not use it") as info:
        ContextSpec.from_config(["coords", "patch"], 3, 1, str(tmp_path / "stage1.ckpt"))
    assert "add autocontext to data.context" in info.value.fix
    from mrinet.errors import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ContextSpec.from_config("autocontext", 3, 1, str(tmp_path / "missing.ckpt"))
