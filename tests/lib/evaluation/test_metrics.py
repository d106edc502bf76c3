"""Each metric against values computed by hand, on anisotropic grids (1 x 2 x 3 mm voxels)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lib.evaluation.metrics import label_metrics, lesion_counts

SPACING = (1.0, 2.0, 3.0)  # mm along i, j, k: 6 mm^3 per voxel


def box(shape, corner, size) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + s) for c, s in zip(corner, size))] = True
    return mask


def test_overlap_and_volumes() -> None:
    truth = box((12, 12, 12), (2, 2, 2), (4, 4, 4))  # 64 voxels
    pred = box((12, 12, 12), (2, 2, 2), (4, 4, 2))  # its lower half: 32 voxels
    m = label_metrics(truth, pred, SPACING)
    assert m.dice == pytest.approx(2 * 32 / (64 + 32))
    assert (m.precision, m.recall) == (1.0, 0.5)
    assert m.volume_ml_true == pytest.approx(64 * 6 / 1000) and m.volume_ml_pred == pytest.approx(32 * 6 / 1000)
    assert (m.lesion_tp, m.lesion_fp, m.lesion_fn) == (1, 0, 0) and m.lesion_f1 == 1.0


def test_distances_are_in_mm() -> None:
    # One voxel each, 2 voxels apart along i, 1 along j, 1 along k: sqrt(2^2 + 2^2 + 3^2) = sqrt(17) mm.
    truth = box((8, 8, 8), (2, 2, 2), (1, 1, 1))
    pred = box((8, 8, 8), (4, 3, 3), (1, 1, 1))
    distance = math.sqrt((2 * 1.0) ** 2 + (1 * 2.0) ** 2 + (1 * 3.0) ** 2)
    assert label_metrics(truth, pred, SPACING, tolerance_mm=2.0).hd95_mm == pytest.approx(distance)
    # Surface Dice: every surface point is sqrt(17) = 4.12 mm from the other surface.
    assert label_metrics(truth, pred, SPACING, tolerance_mm=4.0).surface_dice == 0.0
    assert label_metrics(truth, pred, SPACING, tolerance_mm=4.2).surface_dice == 1.0
    # The same voxels on an isotropic 1 mm grid are sqrt(6) mm apart: spacing is used, not voxel counts.
    assert label_metrics(truth, pred, (1.0, 1.0, 1.0)).hd95_mm == pytest.approx(math.sqrt(6))


def test_identical_masks() -> None:
    truth = box((10, 10, 10), (1, 2, 3), (5, 4, 3))
    m = label_metrics(truth, truth.copy(), SPACING)
    assert (m.dice, m.precision, m.recall, m.hd95_mm, m.surface_dice) == (1.0, 1.0, 1.0, 0.0, 1.0)


def test_lesion_detection() -> None:
    # Three reference lesions; the prediction finds two (one only by a single overlapping voxel), misses the
    # third and adds one lesion where there is none.
    shape = (30, 10, 10)
    truth = box(shape, (1, 1, 1), (3, 3, 3)) | box(shape, (10, 1, 1), (3, 3, 3)) | box(shape, (20, 1, 1), (2, 2, 2))
    pred = box(shape, (1, 1, 1), (3, 3, 3)) | box(shape, (12, 3, 3), (3, 3, 3)) | box(shape, (25, 6, 6), (2, 2, 2))
    assert lesion_counts(truth, pred) == (2, 1, 1)
    m = label_metrics(truth, pred, SPACING)
    assert (m.lesion_precision, m.lesion_recall, m.lesion_f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # Two predicted pieces of one reference lesion: one lesion found, no false positive.
    split = box(shape, (1, 1, 1), (1, 3, 3)) | box(shape, (3, 1, 1), (1, 3, 3))
    assert lesion_counts(box(shape, (1, 1, 1), (3, 3, 3)), split) == (1, 0, 0)
    # Lesions touching at a corner are one (26-connectivity).
    corner = box(shape, (1, 1, 1), (1, 1, 1)) | box(shape, (2, 2, 2), (1, 1, 1))
    assert lesion_counts(corner, corner) == (1, 0, 0)


def test_empty_masks_are_defined() -> None:
    empty, some = np.zeros((6, 6, 6), bool), box((6, 6, 6), (1, 1, 1), (2, 2, 2))
    both = label_metrics(empty, empty, SPACING)
    assert (both.dice, both.precision, both.recall, both.hd95_mm, both.surface_dice, both.lesion_f1) == (
        1.0,
        1.0,
        1.0,
        0.0,
        1.0,
        1.0,
    )
    false_alarm = label_metrics(empty, some, SPACING)
    assert (false_alarm.dice, false_alarm.precision, false_alarm.surface_dice, false_alarm.lesion_f1) == (0, 0, 0, 0)
    assert math.isnan(false_alarm.recall) and math.isnan(false_alarm.hd95_mm)
    assert (false_alarm.lesion_fp, false_alarm.lesion_precision) == (1, 0.0) and math.isnan(false_alarm.lesion_recall)
    missed = label_metrics(some, empty, SPACING)
    assert (missed.dice, missed.recall, missed.surface_dice, missed.lesion_recall, missed.lesion_f1) == (0, 0, 0, 0, 0)
    assert math.isnan(missed.precision) and math.isnan(missed.hd95_mm) and math.isnan(missed.lesion_precision)


def test_masks_on_different_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="not on the same grid"):
        label_metrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), SPACING)
