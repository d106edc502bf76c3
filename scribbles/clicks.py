"""Clicks with no training: foreground/background points (IJK voxel indices, as 3D Slicer sends them) -> 3D mask.

Each foreground click marks a small ball of the object; its intensity model is fitted around the clicks and the
image's own values; the object's likely size is measured from the clicked tissue's extent. Corrective clicks refine
the previous result (kept per image and label) instead of starting over.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from scribbles.graphcut import CLICK_PARAMS, GraphCutParams, connected_to, refine, region
from scribbles.intensity import IntensityModel, robust_normalise
from scribbles.shape_prior import FAR_MM

SEED_RADIUS_MM = 3.0  # hard seed around each click
SAMPLE_RADIUS_MM = 6.0  # intensity samples around each foreground click
SEARCH_MM = 40.0  # how far from the clicks the object may extend

Point = Sequence[int]


def check_points(points: Sequence[Point], shape: Sequence[int], name: str) -> list[tuple[int, int, int]]:
    """Validate IJK ``points`` against the image ``shape``; raise ValueError naming the first bad one."""
    checked = []
    for point in points:
        if len(point) != len(shape) or not all(float(v).is_integer() for v in point):
            raise ValueError(f"{name} point {list(point)} is not an [i, j, k] voxel index")
        ijk = tuple(int(v) for v in point)
        if not all(0 <= v < n for v, n in zip(ijk, shape)):
            raise ValueError(f"{name} point {list(point)} lies outside the image of size {list(shape)}")
        checked.append(ijk)
    return checked


def balls(shape: Sequence[int], spacing: Sequence[float], points: Sequence[Point], radius_mm: float) -> np.ndarray:
    """Boolean mask of the balls of ``radius_mm`` around ``points`` (each at least its own voxel)."""
    mask = np.zeros(shape, bool)
    if not points:
        return mask
    reach = [int(np.ceil(radius_mm / s)) for s in spacing]
    for point in points:
        box = tuple(slice(max(p - r, 0), min(p + r + 1, n)) for p, r, n in zip(point, reach, shape))
        grid = np.meshgrid(
            *[(np.arange(b.start, b.stop) - p) * s for b, p, s in zip(box, point, spacing)], indexing="ij"
        )
        mask[box] |= sum(g**2 for g in grid) <= radius_mm**2
        mask[tuple(point)] = True
    return mask


def object_radius(image: np.ndarray, spacing: Sequence[float], foreground: np.ndarray, samples: np.ndarray) -> float:
    """Equivalent-sphere radius (mm) of the tissue like the clicked one that is connected to the clicks.

    The clicked tissue's intensity model (fitted to ``samples``) against the search box's border gives
    P(clicked tissue); its opened, connected part around the clicks measures how large the object may be.
    """
    x = robust_normalise(image)
    border = np.ones(foreground.shape, bool)
    border[tuple(slice(1, -1) for _ in foreground.shape)] = False
    like = IntensityModel(components=1).fit(x, samples, border & ~samples).foreground_probability(x) > 0.5
    like = ndimage.binary_opening(like, iterations=1) | foreground
    volume = connected_to(like, foreground).sum() * float(np.prod(spacing))
    return float(np.clip((3 * volume / (4 * np.pi)) ** (1 / 3), SAMPLE_RADIUS_MM, SEARCH_MM))


def _click_distance(
    foreground: np.ndarray, background: np.ndarray, spacing: Sequence[float], radius: float
) -> np.ndarray:
    """Signed distance (mm) of the object: within ``radius`` of a foreground click and nearer it than background."""
    to_fg = ndimage.distance_transform_edt(~foreground, sampling=spacing) if foreground.any() else FAR_MM
    if not background.any():
        return (to_fg - radius).astype(np.float32)
    to_bg = ndimage.distance_transform_edt(~background, sampling=spacing)
    return np.maximum(to_fg - radius, (to_fg - to_bg) / 2).astype(np.float32)


def segment_clicks(
    image: np.ndarray,
    spacing: Sequence[float],
    foreground_points: Sequence[Point],
    background_points: Sequence[Point],
    previous: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    params: GraphCutParams = CLICK_PARAMS,
) -> np.ndarray:
    """Segment the clicked object (boolean mask, I x J x K), refining ``previous`` when given.

    Args:
        image: channels first (C, I, J, K), on its own values.
        spacing: voxel size in mm along I, J, K.
        foreground_points, background_points: IJK voxel indices.
        previous: the result before the latest click(s).
        roi: limit the result to this mask when given.
        params: energy weights.
    """
    shape = image.shape[1:]
    fg_points = check_points(foreground_points, shape, "foreground")
    bg_points = check_points(background_points, shape, "background")
    if not fg_points and (previous is None or not previous.any()):
        raise ValueError("no foreground click: click inside the object first")
    fg = balls(shape, spacing, fg_points, SEED_RADIUS_MM)
    bg = balls(shape, spacing, bg_points, SEED_RADIUS_MM)

    # Search box around the clicks (and the previous result): the object's size is measured inside it.
    search = GraphCutParams(margin_mm=SEARCH_MM, margin_fraction=0.0)
    marks = fg | (previous if previous is not None else False)

    box = region(shape, spacing, [marks], search)
    samples = balls(shape, spacing, fg_points, SAMPLE_RADIUS_MM)[box] if fg_points else previous[box]
    radius = object_radius(image[(slice(None),) + box], spacing, marks[box], samples)
    click_params = GraphCutParams(**{**params.__dict__, "margin_mm": radius, "margin_fraction": 0.0})
    distance = functools.partial(_click_distance, radius=radius)
    return refine(image, spacing, fg, bg, distance, existing=previous, roi=roi, params=click_params)
