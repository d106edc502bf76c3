"""RTSTRUCT contours rasterised on an image's grid, by ROI name."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from pydicom import Dataset

from lib.datastore.rtstruct import referenced_series, rtstruct_label


def square(image: sitk.Image, k: int, i0: int, i1: int, j0: int, j1: int) -> list[float]:
    """ContourData of a square in index space on slice ``k``, in patient coordinates."""
    corners = [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]
    return [c for i, j in corners for c in image.TransformIndexToPhysicalPoint((i, j, k))]


def structure_set(image: sitk.Image) -> Dataset:
    rois, contours = [], []
    for number, name, k in ((1, "GTV_Mass_CT", 3), (2, "Spinal cord", 5)):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        rois.append(roi)
        contour = Dataset()
        contour.ContourData = square(image, k, 2, 6, 3, 8)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, [contour]
        contours.append(item)
    rtstruct = Dataset()
    rtstruct.StructureSetROISequence, rtstruct.ROIContourSequence = rois, contours
    series, study, frame = Dataset(), Dataset(), Dataset()
    series.SeriesInstanceUID = "1.2.3"
    study.RTReferencedSeriesSequence = [series]
    frame.RTReferencedStudySequence = [study]
    rtstruct.ReferencedFrameOfReferenceSequence = [frame]
    return rtstruct


def test_named_rois_are_filled_on_their_slice_of_an_oblique_grid() -> None:
    image = sitk.Image(12, 14, 8, sitk.sitkInt16)
    image.SetSpacing((0.8, 1.1, 3.0))
    image.SetOrigin((-20.0, 15.0, -40.0))
    angle = np.deg2rad(20)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    rtstruct = structure_set(image)
    assert referenced_series(rtstruct) == "1.2.3"

    label = rtstruct_label(rtstruct, image, {"gtv_mass_ct": 1})

    assert label.shape == (12, 14, 8) and set(np.unique(label)) == {0, 1}
    inside, box = label[3:6, 4:8, 3], label[2:7, 3:9, 3]
    assert inside.all() and box.sum() == label.sum()  # the square's inside filled, nothing beyond its outline
    assert label[:, :, [0, 1, 2, 4, 5, 6, 7]].sum() == 0  # on its own slice only; the unmapped ROI is left out
