"""Clicks with no training: point validation, click-to-seed mapping and corrective clicks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lib.transforms.guidance import check_points
from scribbles.clicks import ClickResult, _radial, balls, segment_clicks
from tests.support.annotator import deepest_point, dice, next_click
from tests.synthetic import tumour_volume

SPACING = (0.8, 1.1, 3.3)


def test_points_are_validated_against_the_image() -> None:
    assert check_points([[0, 0, 0], [9, 19, 29]], (10, 20, 30), "foreground") == [(0, 0, 0), (9, 19, 29)]
    assert check_points([[1.0, 2.0, 3.0]], (10, 20, 30), "foreground") == [(1, 2, 3)]
    with pytest.raises(
        ValueError, match=r"background point \[10, 0, 0\] lies outside the image of size \[10, 20, 30\]"
    ):
        check_points([[10, 0, 0]], (10, 20, 30), "background")
    with pytest.raises(ValueError, match=r"foreground point \[1, -1, 0\] lies outside"):
        check_points([[1, -1, 0]], (10, 20, 30), "foreground")
    with pytest.raises(ValueError, match=r"is not an \[i, j, k\] voxel index"):
        check_points([[1.5, 2, 3]], (10, 20, 30), "foreground")
    with pytest.raises(ValueError, match=r"is not an \[i, j, k\] voxel index"):
        check_points([[1, 2]], (10, 20, 30), "foreground")
    with pytest.raises(ValueError, match="lies outside the image"):  # too large for a float: a 500 before
        check_points([[81, 71, 10**400]], (10, 20, 30), "foreground")


def test_click_seeds_are_balls_in_mm_around_the_ijk_point() -> None:
    seeds = balls((30, 30, 10), SPACING, [(10, 12, 4)], radius_mm=3.0)
    assert seeds[10, 12, 4]
    i, j, k = np.nonzero(seeds)
    assert (i.min(), i.max()) == (7, 13)  # 3 mm / 0.8 mm = 3 voxels along I
    assert (j.min(), j.max()) == (10, 14)  # 2 voxels along J
    assert (k.min(), k.max()) == (4, 4)  # less than one 3.3 mm slice along K
    assert balls((30, 30, 10), SPACING, [(0, 0, 0)], 0.1).sum() == 1  # at least the clicked voxel
    assert not balls((30, 30, 10), SPACING, [], 3.0).any()


def test_one_click_segments_a_clear_tumour_and_clicks_correct_it() -> None:
    image, truth = tumour_volume(seed=5, size=(64, 56, 24))
    truth = truth.astype(bool)
    first = deepest_point(truth, SPACING)
    result = segment_clicks(image, SPACING, [first], [])
    assert result.mask[first] and dice(result.mask, truth) > 0.85
    assert result.foreground == (first,) and result.background == ()

    # A previous result missing half of the tumour: one click in the missing half brings it back, and a
    # foreground click only adds.
    half = truth.copy()
    half[: int(np.flatnonzero(truth.any(axis=(1, 2))).mean())] = False
    point, foreground = next_click(truth, half, SPACING)
    assert foreground and truth[point] and not half[point]
    corrected = segment_clicks(image, SPACING, [first, point], [], previous=ClickResult((first,), (), half))
    assert dice(corrected.mask, truth) > max(dice(half, truth), 0.85)
    assert corrected.mask[half].all()


def test_background_click_removes_the_leak_around_it_and_keeps_the_rest() -> None:
    image, truth = tumour_volume(seed=6, size=(64, 56, 24))
    truth = truth.astype(bool)
    first = deepest_point(truth, SPACING)
    leak = np.zeros_like(truth)
    leak[1:12, 1:12, 5:15] = True
    previous = ClickResult((first,), (), truth | leak)
    result = segment_clicks(image, SPACING, [first], [(5, 5, 10)], previous=previous)
    assert not result.mask[5, 5, 10] and not (result.mask & ~previous.mask).any()  # a background click only removes
    assert dice(result.mask, truth) > dice(previous.mask, truth)
    assert result.mask[truth].mean() > 0.98  # the tumour, far from the click, is kept


def test_a_background_click_outside_the_result_changes_nothing_until_it_matters() -> None:
    image, truth = tumour_volume(seed=6, size=(64, 56, 24))
    truth = truth.astype(bool)
    first = deepest_point(truth, SPACING)
    previous = ClickResult((first,), (), truth)
    result = segment_clicks(image, SPACING, [first], [(2, 2, 2)], previous=previous)
    assert np.array_equal(result.mask, truth) and result.background == ((2, 2, 2),)


def test_clicks_that_do_not_extend_the_previous_ones_start_over() -> None:
    image, truth = tumour_volume(seed=5, size=(64, 56, 24))
    truth = truth.astype(bool)
    first = deepest_point(truth, SPACING)
    stale = ClickResult(((1, 1, 1),), (), np.ones_like(truth))  # another object's result: not refined
    result = segment_clicks(image, SPACING, [first], [], previous=stale)
    assert dice(result.mask, truth) > 0.85
    assert stale.extended_by([(1, 1, 1), first], []) and not stale.extended_by([first], [])


def test_no_foreground_click_and_nothing_to_refine_is_refused() -> None:
    image, _ = tumour_volume(seed=5, size=(32, 32, 12))
    with pytest.raises(ValueError, match="no foreground click: click inside the object first"):
        segment_clicks(image, SPACING, [], [(3, 3, 3)])


def test_a_corrective_click_moves_the_edge_in_a_cone_seen_from_the_first_click() -> None:
    box = (slice(0, 21), slice(0, 21), slice(0, 21))
    centre, click = (10, 10, 10), (18, 10, 10)  # 8 mm along +I at 1 mm spacing
    weight, distance = _radial(box, (1.0, 1.0, 1.0), centre, click, beyond=-2.0)
    assert weight[15, 10, 10] == pytest.approx(1.0) and weight[2, 10, 10] == 0.0  # along the click; opposite
    assert weight[10, 18, 10] == 0.0  # 90 degrees off: outside the 70-degree cone
    assert distance[16, 10, 10] == pytest.approx(0.0)  # the edge: 8 mm - 2 mm (the leak's half-width)
    assert distance[12, 10, 10] < 0 < distance[19, 10, 10]


def test_background_click_in_an_oversized_result_shrinks_it_on_that_side_only() -> None:
    image, truth = tumour_volume(seed=3, size=(64, 56, 24))
    truth = truth.astype(bool)
    first = deepest_point(truth, SPACING)
    grown = ndimage.binary_dilation(truth, iterations=3)  # the result leaked all around
    click, foreground = next_click(truth, grown, SPACING)
    assert not foreground
    result = segment_clicks(image, SPACING, [first], [click], previous=ClickResult((first,), (), grown)).mask
    assert not (result & ~grown).any() and not result[click]
    assert dice(result, truth) > dice(grown, truth) + 0.05
    assert result[truth].mean() > 0.97  # the tumour itself stays
    # Behind the first click, seen from the background click, the tumour stays and only the edge may move.
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in truth.shape], indexing="ij"), axis=-1)
    behind = ((grid - np.array(first)) * np.array(SPACING)) @ ((np.array(click) - first) * np.array(SPACING)) < 0
    edge = grown & ~ndimage.binary_erosion(grown, iterations=3)
    assert grown[behind].sum() > 1000 and result[behind & truth].all()
    assert not ((result != grown) & behind & ~edge).any()
