"""What annotators changed of the pre-segmentations they were served, per model version."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lib.corrections import CorrectionLog
from lib.transforms.geometry import Geometry
from lib.transforms.volume_io import write_label

GEOMETRY = Geometry(
    size=(10, 8, 6), spacing=(0.7, 0.7, 2.5), origin=(1.0, 2.0, 3.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
)


def label(path: Path, *boxes: tuple[int, slice, slice, slice]) -> str:
    array = np.zeros(GEOMETRY.size, np.uint8)
    for value, *box in boxes:
        array[tuple(box)] = value
    return write_label(array, GEOMETRY, str(path))


def test_a_submission_is_compared_with_the_pre_segmentation_served_for_it(tmp_path: Path) -> None:
    log = CorrectionLog(str(tmp_path / "model"), ("tumor", "edema"))
    served = label(tmp_path / "served.nrrd", (1, slice(0, 4), slice(0, 4), slice(0, 2)))  # 32 tumour voxels
    log.served("case0", served, "run-1")
    # The annotator keeps half the tumour (16 voxels), and adds 8 voxels of edema.
    submitted = label(
        tmp_path / "final.nii.gz",
        (1, slice(0, 2), slice(0, 4), slice(0, 2)),
        (2, slice(6, 8), slice(0, 2), slice(0, 2)),
    )

    record = log.submitted("case0", submitted)

    # Tumour Dice 2*16/(32+16); edema Dice 0 (not served): the mean over the labels present.
    assert record["dice"] == pytest.approx((2 * 16 / 48 + 0.0) / 2)
    assert record["voxels_changed"] == 16 + 8 and record["version"] == "run-1"
    assert log.submitted("case0", submitted) is None  # compared once per served pre-segmentation
    assert log.summary() == {"run-1": {"labels": 1, "mean_dice": pytest.approx(1 / 3), "mean_voxels_changed": 24.0}}


def test_the_running_mean_is_kept_per_model_version(tmp_path: Path) -> None:
    log = CorrectionLog(str(tmp_path / "model"), ("tumor",))
    tumour = (1, slice(2, 6), slice(2, 6), slice(1, 3))
    for image, version in (("a", "run-1"), ("b", "run-1"), ("c", "run-2")):
        log.served(image, label(tmp_path / f"{image}.nii.gz", tumour), version)
    log.submitted("a", label(tmp_path / "a_final.nii.gz", tumour))  # unchanged
    log.submitted("b", label(tmp_path / "b_final.nii.gz"))  # erased: Dice 0, 32 voxels changed
    log.submitted("c", label(tmp_path / "c_final.nii.gz", tumour))
    assert log.summary() == {
        "run-1": {"labels": 2, "mean_dice": 0.5, "mean_voxels_changed": 16.0},
        "run-2": {"labels": 1, "mean_dice": 1.0, "mean_voxels_changed": 0.0},
    }
    # A new pre-segmentation of an image replaces the earlier one: only the last served is compared.
    log.served("a", label(tmp_path / "a2.nrrd", (1, slice(0, 1), slice(0, 1), slice(0, 1))), "run-3")
    log.served("a", label(tmp_path / "a3.nii.gz", tumour), "run-4")
    assert log.submitted("a", label(tmp_path / "a_final2.nii.gz", tumour))["version"] == "run-4"


def test_recording_problems_are_logged_not_raised(tmp_path: Path, caplog) -> None:
    log = CorrectionLog(str(tmp_path / "model"), ("tumor",))
    assert log.submitted("never-served", str(tmp_path / "x.nii.gz")) is None
    log.served("case0", label(tmp_path / "served.nii.gz"), "run-1")
    other = Geometry(size=(10, 8, 6), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=GEOMETRY.direction)
    moved = write_label(np.zeros(other.size, np.uint8), other, str(tmp_path / "moved.nii.gz"))
    with caplog.at_level(logging.WARNING):
        assert log.submitted("case0", moved) is None
    assert "not on the served result's grid" in caplog.text
    assert log.summary() == {}
