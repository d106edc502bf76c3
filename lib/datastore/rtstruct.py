"""Expert outlines stored as DICOM RTSTRUCT, as labelmaps on their image's grid."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pydicom
import SimpleITK as sitk
from skimage.draw import polygon


def referenced_series(rtstruct: pydicom.Dataset) -> str | None:
    """The SeriesInstanceUID of the image series an RTSTRUCT outlines (None when it names none)."""
    try:
        frame = rtstruct.ReferencedFrameOfReferenceSequence[0]
        return str(frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        return None


def roi_names(rtstruct: pydicom.Dataset) -> dict[int, str]:
    """ROI number -> ROI name."""
    return {int(roi.ROINumber): str(roi.ROIName) for roi in getattr(rtstruct, "StructureSetROISequence", [])}


def rtstruct_label(rtstruct: pydicom.Dataset, image: sitk.Image, values: Mapping[str, int]) -> np.ndarray:
    """Rasterise the ROIs whose (lower-case) names ``values`` maps to label values, on ``image``'s grid.

    Each planar contour is filled on the slice it lies on (the union of a ROI's contours: inner contours are not
    treated as holes); a later ROI overwrites an earlier one where they overlap.

    Returns:
        An (I, J, K) uint8 labelmap.
    """
    size = image.GetSize()
    label = np.zeros(size, np.uint8)
    names = roi_names(rtstruct)
    for roi in getattr(rtstruct, "ROIContourSequence", []):
        value = values.get(names.get(int(roi.ReferencedROINumber), "").lower())
        if not value:
            continue
        for contour in getattr(roi, "ContourSequence", []):
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            index = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in points])
            k = int(round(float(index[:, 2].mean())))
            if 0 <= k < size[2]:
                rows, columns = polygon(index[:, 0], index[:, 1], shape=(size[0], size[1]))
                label[rows, columns, k] = value
    return label
