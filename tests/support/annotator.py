"""A simulated annotator: scribbles and clicks placed from a true outline, as issue 3's protocol describes.

Arrays are in the image's voxel order (I, J, K) with K the axial (slice) axis, as ``lib.transforms.read_volume``
returns them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lib.transforms.masks import deepest_point

Point = tuple[int, int, int]


def axial_slices(truth: np.ndarray) -> list[int]:
    """The centre slice of the outline and the slices at +-25% of its axial extent."""
    ks = np.flatnonzero(truth.any(axis=(0, 1)))
    first, last = int(ks[0]), int(ks[-1])
    centre = (first + last) / 2
    quarter = 0.25 * (last - first)
    return sorted({round(centre - quarter), round(centre), round(centre + quarter)})


def scribbles(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (outline eroded by 2 voxels) and background (ring 3-6 voxels outside) on three axial slices."""
    foreground = np.zeros(truth.shape, bool)
    background = np.zeros(truth.shape, bool)
    disk = ndimage.generate_binary_structure(2, 1)
    for k in axial_slices(truth):
        outline = truth[:, :, k] > 0
        foreground[:, :, k] = ndimage.binary_erosion(outline, disk, iterations=2)
        near = ndimage.binary_dilation(outline, disk, iterations=2)  # the ring starts 3 voxels out
        background[:, :, k] = ndimage.binary_dilation(outline, disk, iterations=6) & ~near
    return foreground, background


def next_click(truth: np.ndarray, prediction: np.ndarray | None, spacing: tuple[float, ...]) -> tuple[Point, bool]:
    """The next click and whether it is a foreground click.

    The first click (no prediction yet) goes to the deepest interior point of the outline; each later one to the
    deepest point of the largest error region: foreground where the tumour was missed, background where it leaked.
    """
    truth = truth > 0
    if prediction is None:
        return deepest_point(truth, spacing), True
    prediction = prediction > 0
    best: tuple[int, np.ndarray, bool] | None = None
    for error, foreground in ((truth & ~prediction, True), (prediction & ~truth, False)):
        components, count = ndimage.label(error)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        if best is None or sizes[largest - 1] > best[0]:
            best = (int(sizes[largest - 1]), components == largest, foreground)
    if best is None:
        raise ValueError("the prediction already equals the outline: no click to make")
    return deepest_point(best[1], spacing), best[2]


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    prediction, truth = prediction > 0, truth > 0
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (prediction & truth).sum() / total)
