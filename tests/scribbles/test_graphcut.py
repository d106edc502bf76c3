"""Region, ROI and the 3D graph-cut refinement on synthetic tumours with awkward geometry."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from scribbles.graphcut import GraphCutParams, refine, region, roi_mask
from scribbles.shape_prior import signed_distance
from tests.support.annotator import dice, scribbles
from tests.synthetic import tumour_volume

SPACING = (0.8, 1.1, 3.3)
DISTANCE = functools.partial(signed_distance, taper=1.0)


@pytest.fixture
def tumour() -> tuple[np.ndarray, np.ndarray]:
    image, label = tumour_volume(seed=4, size=(64, 56, 24))
    return image, label.astype(bool)


def test_roi_corners_may_arrive_unsorted() -> None:
    sorted_roi = roi_mask((20, 30, 10), [2, 9, 5, 25, 1, 4])
    assert np.array_equal(roi_mask((20, 30, 10), [9, 2, 25, 5, 4, 1]), sorted_roi)
    assert sorted_roi.sum() == 8 * 21 * 4  # inclusive corners
    assert roi_mask((20, 30, 10), []) is None and roi_mask((20, 30, 10), None) is None


@pytest.mark.parametrize(
    ("roi", "message"),
    [([1, 2, 3], "roi must hold 6 voxel indices"), ([30, 40, 0, 5, 0, 5], "lies outside the image of size")],
)
def test_bad_roi_is_a_clear_error(roi: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roi_mask((20, 30, 10), roi)


def test_region_grows_by_the_margin_and_stays_in_the_image() -> None:
    marks = np.zeros((50, 40, 12), bool)
    marks[20:30, 1:5, 5] = True
    box = region(marks.shape, SPACING, [marks], GraphCutParams(margin_mm=4.0, margin_fraction=0.5))
    assert box[0] == slice(15, 35)  # max(4 mm / 0.8 = 5, 0.5 x 10) voxels each side
    assert box[1] == slice(0, 9)  # clipped at 0
    assert box[2] == slice(3, 8)  # ceil(4 / 3.3) = 2 voxels


def test_scribbles_on_three_slices_segment_the_tumour(tumour) -> None:
    image, truth = tumour
    fg, bg = scribbles(truth)
    result = refine(image, SPACING, fg, bg, DISTANCE)
    assert result.shape == truth.shape and result.dtype == bool
    assert dice(result, truth) > 0.9
    assert result[fg].all() and not result[bg].any()  # marks are hard constraints


def test_background_scribble_alone_trims_the_pre_segmentation_around_it(tumour) -> None:
    image, truth = tumour
    leak = np.zeros_like(truth)
    ks = np.flatnonzero(truth.any(axis=(0, 1)))
    leak[2:14, 2:14, ks[0] : ks[-1]] = True  # a wrong block in a corner, apart from the tumour
    leak &= ~truth
    existing = truth | leak
    bg = np.zeros_like(truth)
    middle = (ks[0] + ks[-1]) // 2
    bg[4:12, 4:12, middle] = True
    result = refine(image, SPACING, np.zeros_like(truth), bg, DISTANCE, existing=existing)
    assert not result[2:14, 2:14, middle - 1 : middle + 2].any()  # the scribbled slice and its neighbours
    assert (result & leak).sum() < leak.sum() / 2
    assert dice(result & ~leak, truth) > 0.95  # the tumour is kept


def test_roi_limits_the_result(tumour) -> None:
    image, truth = tumour
    fg, bg = scribbles(truth)
    i = np.flatnonzero(truth.any(axis=(1, 2)))
    middle = int(i.mean())
    roi = roi_mask(truth.shape, [63, middle, 0, 55, 23, 0])  # unsorted corners
    result = refine(image, SPACING, fg, bg, DISTANCE, roi=roi)
    assert result.any() and not result[:middle].any()


def test_no_mark_and_no_segmentation_is_refused(tumour) -> None:
    image, truth = tumour
    empty = np.zeros_like(truth)
    bg = empty.copy()
    bg[0, 0, 0] = True
    with pytest.raises(ValueError, match="no foreground mark"):
        refine(image, SPACING, empty, bg, DISTANCE)
