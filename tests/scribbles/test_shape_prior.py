"""The shape prior the marks give: slice detection, shape-based interpolation, 3D fallback."""

from __future__ import annotations

import numpy as np
import pytest

from scribbles.shape_prior import mask_signed_distance, prior_from_distance, signed_distance, slice_axis

SPACING = (0.8, 1.1, 3.3)


def disk(shape: tuple[int, int], centre: tuple[float, float], radius_mm: float, spacing=SPACING[:2]) -> np.ndarray:
    i, j = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij")
    return i**2 + j**2 <= radius_mm**2


@pytest.mark.parametrize(("axis", "slices"), [(2, [2, 5, 8]), (1, [7]), (0, [3, 20])])
def test_slice_axis_finds_the_scribbled_plane(axis: int, slices: list[int]) -> None:
    marks = np.zeros((30, 24, 12), bool)
    for s in slices:
        index = [slice(4, 10)] * 3
        index[axis] = slice(s, s + 1)
        marks[tuple(index)] = True
    assert slice_axis(marks, SPACING) == axis


def test_slice_axis_is_none_for_3d_marks() -> None:
    marks = np.zeros((20, 20, 10), bool)
    marks[5:15, 5:15, 2:8] = True
    assert slice_axis(marks, SPACING) is None


def test_interpolates_between_scribbled_slices_and_tapers_beyond() -> None:
    shape = (40, 30, 12)
    fg = np.zeros(shape, bool)
    bg = np.zeros(shape, bool)
    fg[..., 3] = disk(shape[:2], (20, 15), 4.0)
    fg[..., 7] = disk(shape[:2], (20, 15), 8.0)
    bg[..., 3] = ~disk(shape[:2], (20, 15), 7.0)
    bg[..., 7] = ~disk(shape[:2], (20, 15), 11.0)
    distance = signed_distance(fg, bg, SPACING, taper=1.0)
    assert distance.shape == shape and distance.dtype == np.float32
    # On the marked slices: the in-plane distance; halfway between: the mean of both slices' distances.
    np.testing.assert_allclose(distance[..., 5], (distance[..., 3] + distance[..., 7]) / 2, atol=1e-5)
    assert distance[20, 15, 5] < 0 and distance[20, 15, 3] < 0
    # Beyond the last marked slice the outline shrinks by taper x the slice distance.
    np.testing.assert_allclose(distance[..., 9], distance[..., 7] + 2 * SPACING[2], atol=1e-5)
    assert distance[20, 15, 11] > distance[20, 15, 9]


def test_background_marks_pull_the_outline_in() -> None:
    shape = (40, 30, 6)
    fg = np.zeros(shape, bool)
    bg = np.zeros(shape, bool)
    fg[18:22, 13:17, 2] = True
    bg[30, 13:17, 2] = True
    distance = signed_distance(fg, bg, SPACING)
    assert distance[26, 15, 2] > 0 > distance[20, 15, 2]  # past the midpoint towards the background mark


def test_3d_marks_use_3d_distances() -> None:
    fg = np.zeros((20, 20, 10), bool)
    fg[8:12, 8:12, 3:7] = True
    distance = signed_distance(fg, np.zeros_like(fg), SPACING)
    # No background mark: the outline is the marks themselves.
    assert distance[10, 10, 5] == 0 and distance[10, 10, 8] == pytest.approx(2 * SPACING[2], abs=1e-4)
    bg = np.zeros_like(fg)
    bg[10, 10, 9] = True
    with_bg = signed_distance(fg, bg, SPACING)
    assert with_bg[10, 10, 5] < 0 and with_bg[10, 10, 8] == pytest.approx(2 * SPACING[2] - SPACING[2], abs=1e-4)


def test_no_foreground_mark_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one foreground mark"):
        signed_distance(np.zeros((4, 4, 4), bool), np.ones((4, 4, 4), bool), SPACING)


def test_prior_is_half_on_the_outline() -> None:
    mask = np.zeros((20, 20, 10), bool)
    mask[5:15, 5:15, 2:8] = True
    distance = mask_signed_distance(mask, SPACING)
    prior = prior_from_distance(distance, 3.0)
    assert (prior[mask] > 0.5).all() and (prior[~mask] < 0.5).all()
    assert prior_from_distance(np.zeros(1, np.float32), 3.0)[0] == pytest.approx(0.5)
