"""Clicks with no training: foreground/background points (IJK voxel indices, as 3D Slicer sends them) -> 3D mask.

The first foreground click(s) segment the object: a small ball around each is a hard seed, the intensity model is
fitted around the clicks against the search box, and the object's likely size is measured from the clicked
tissue's extent. Each later click corrects the previous result: seen from the first click, it moves the object's
edge in a cone around its direction; a foreground click only adds, a background click only removes, and outside
the cone the result stays as it was but for its edge, which may move a few mm where the image disagrees.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lib.transforms.guidance import Point, check_points
from lib.transforms.masks import border_mask
from scribbles.graphcut import CLICK_PARAMS, GraphCutParams, combine, connected_to, graph_cut, refine, region
from scribbles.intensity import IntensityModel, robust_normalise
from scribbles.shape_prior import FAR_MM, mask_signed_distance, prior_from_distance

SEED_RADIUS_MM = 3.0  # hard seed around each click
SAMPLE_RADIUS_MM = 6.0  # intensity samples around each click
SEARCH_MM = 60.0  # how far from the clicks the object may extend
TEXTURE_MM = 4.0  # smoothing of the clicked tissue's likelihood over the tumour's texture
DEPTH_TO_RADIUS = 1.2  # object radius / depth of the click inside it (a sphere clicked off-centre, an ellipsoid)
RING_MM = 3.0  # background samples just outside the previous result


@dataclass(frozen=True)
class ClickResult:
    """A segmentation and the clicks that made it (what a later correction starts from)."""

    foreground: tuple[Point, ...]
    background: tuple[Point, ...]
    mask: np.ndarray

    def extended_by(self, foreground: Sequence[Point], background: Sequence[Point]) -> bool:
        """Whether ``foreground``/``background`` keep every click of this result (the annotator added clicks)."""
        return set(self.foreground) <= set(foreground) and set(self.background) <= set(background)


def balls(shape: Sequence[int], spacing: Sequence[float], points: Sequence[Point], radius_mm: float) -> np.ndarray:
    """Boolean mask of the balls of ``radius_mm`` around ``points`` (each at least its own voxel)."""
    mask = np.zeros(shape, bool)
    reach = [int(np.ceil(radius_mm / s)) for s in spacing]
    for point in points:
        box = tuple(slice(max(p - r, 0), min(p + r + 1, n)) for p, r, n in zip(point, reach, shape))
        grid = np.meshgrid(
            *[(np.arange(b.start, b.stop) - p) * s for b, p, s in zip(box, point, spacing)], indexing="ij"
        )
        mask[box] |= sum(g**2 for g in grid) <= radius_mm**2
        mask[tuple(point)] = True
    return mask


def _depth(tissue: np.ndarray, seeds: np.ndarray, spacing: Sequence[float]) -> float:
    """The largest distance (mm) from a seed voxel to the nearest voxel outside ``tissue`` (or the box)."""
    inside = ndimage.distance_transform_edt(np.pad(tissue, 1), sampling=spacing)[(slice(1, -1),) * tissue.ndim]
    return float(inside[seeds].max())


def object_radius(
    x: np.ndarray,
    spacing: Sequence[float],
    seeds: np.ndarray,
    samples: np.ndarray,
) -> float:
    """How far (mm) the object around ``seeds`` likely extends, from the tissue like the clicked one.

    ``x`` is the search box, robustly normalised. The clicked tissue's intensity model (fitted to ``samples``)
    against the box's border gives P(clicked tissue). The object's radius is the smaller of ``DEPTH_TO_RADIUS``
    x the clicks' depth inside that tissue (the distance to the nearest unlike tissue) and the equivalent-sphere
    radius of the smoothed tissue connected to the clicks (which overshoots where the object touches alike
    tissue, such as tumour and muscle).
    """
    others = border_mask(samples.shape) & ~samples
    probability = IntensityModel(components=1).fit(x, samples, others).foreground_probability(x)
    # Depth in the tissue as it is (right for small, even objects) and smoothed over its texture (right for large,
    # heterogeneous ones); both can only underestimate, so the larger counts.
    raw = (probability > 0.5) | seeds
    smoothed = (ndimage.gaussian_filter(probability, [TEXTURE_MM / s for s in spacing]) > 0.5) | seeds
    depth = max(_depth(raw, seeds, spacing), _depth(smoothed, seeds, spacing))
    volume = connected_to(smoothed, seeds).sum() * float(np.prod(spacing))
    radius = min(DEPTH_TO_RADIUS * depth, (3 * volume / (4 * np.pi)) ** (1 / 3))
    return float(np.clip(radius, SAMPLE_RADIUS_MM, SEARCH_MM))


def _click_distance(
    foreground: np.ndarray, background: np.ndarray, spacing: Sequence[float], radius: float
) -> np.ndarray:
    """Signed distance (mm) of the object: within ``radius`` of a foreground click and nearer it than background."""
    to_fg = ndimage.distance_transform_edt(~foreground, sampling=spacing) if foreground.any() else FAR_MM
    if not background.any():
        return (to_fg - radius).astype(np.float32)
    to_bg = ndimage.distance_transform_edt(~background, sampling=spacing)
    return np.maximum(to_fg - radius, (to_fg - to_bg) / 2).astype(np.float32)


CONE_COS = float(np.cos(np.deg2rad(70.0)))  # half-angle of the cone a corrective click speaks for


def _distance_to(target: np.ndarray, point: Point, spacing: Sequence[float]) -> float:
    """Distance (mm) from ``point`` to the nearest voxel of ``target``, looked for within ``SEARCH_MM``."""
    reach = [int(np.ceil(SEARCH_MM / s)) for s in spacing]
    window = tuple(slice(max(p - r, 0), min(p + r + 1, n)) for p, r, n in zip(point, reach, target.shape))
    if not target[window].any():
        return SEARCH_MM
    distance = ndimage.distance_transform_edt(~target[window], sampling=spacing)
    return float(min(distance[tuple(p - w.start for p, w in zip(point, window))], SEARCH_MM))


def _nearest(points: Sequence[Point], to: Point, spacing: Sequence[float]) -> Point:
    return min(points, key=lambda p: sum(((a - b) * s) ** 2 for a, b, s in zip(p, to, spacing)))


def _radial(
    box: tuple[slice, ...], spacing: Sequence[float], centre: Point, click: Point, beyond: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and signed distance (mm, positive outside) of the object's edge that a corrective click implies.

    Tumours are roughly star-shaped around the first click. A click at distance D from ``centre`` puts the edge at
    D + ``beyond`` along that direction (foreground click: ``beyond`` = its distance to the result, the missed
    part's half-width; background click: minus its depth inside the result, the leak's half-width). The edge
    applies in a cone around that direction, with a weight fading to 0 at the cone's side.
    """
    u = np.meshgrid(*[(np.arange(b.start, b.stop) - c) * s for b, c, s in zip(box, centre, spacing)], indexing="ij")
    direction = np.array([(k - c) * s for k, c, s in zip(click, centre, spacing)])
    reach = float(np.linalg.norm(direction))
    radius = np.sqrt(sum(x**2 for x in u))
    cosine = sum(x * y for x, y in zip(u, direction)) / np.maximum(radius * reach, 1e-6)
    weight = np.clip((cosine - CONE_COS) / (1 - CONE_COS), 0.0, 1.0)
    return weight.astype(np.float32), (radius - max(reach + beyond, SEED_RADIUS_MM)).astype(np.float32)


def first_segmentation(
    image: np.ndarray,
    spacing: Sequence[float],
    foreground: Sequence[Point],
    background: Sequence[Point],
    params: GraphCutParams = CLICK_PARAMS,
) -> np.ndarray:
    """The object around the foreground clicks, with no earlier result (boolean mask, I x J x K)."""
    shape = image.shape[1:]
    fg = balls(shape, spacing, foreground, SEED_RADIUS_MM)
    bg = balls(shape, spacing, background, SEED_RADIUS_MM)
    box = region(shape, spacing, [fg], GraphCutParams(margin_mm=SEARCH_MM, margin_fraction=0.0))
    samples = balls(shape, spacing, foreground, SAMPLE_RADIUS_MM)[box]
    radius = object_radius(robust_normalise(image[(slice(None),) + box]), spacing, fg[box], samples)
    click_params = GraphCutParams(**{**params.__dict__, "margin_mm": radius, "margin_fraction": 0.0})
    distance = functools.partial(_click_distance, radius=radius)
    return refine(image, spacing, fg, bg, distance, params=click_params)


def correct(
    image: np.ndarray,
    spacing: Sequence[float],
    mask: np.ndarray,
    click: Point,
    is_foreground: bool,
    foreground: Sequence[Point],
    background: Sequence[Point],
    params: GraphCutParams = CLICK_PARAMS,
) -> np.ndarray:
    """Correct ``mask`` with one new click: a foreground click only adds, a background click only removes.

    Seen from the first foreground click (for a background click: the nearest one), the click moves the object's
    edge in a cone around its direction (:func:`_radial`); outside the cone the previous result is the prior, so
    there its edge moves by a few mm at most, where the image disagrees. An intensity model of the result against
    its close surroundings, and of the clicks, decides with that shape prior in a 3D graph cut on a box around the
    result and the click.
    """
    shape = mask.shape
    if not is_foreground and not mask[click]:
        return mask  # nothing to remove here; the click still acts as a background seed from now on
    if is_foreground:
        centre, beyond = foreground[0], _distance_to(mask, click, spacing)  # the missed part's half-width
    else:
        centre, beyond = _nearest(foreground, click, spacing), -_distance_to(~mask, click, spacing)  # the leak's
    seed = balls(shape, spacing, [click], SEED_RADIUS_MM)
    margin = GraphCutParams(margin_mm=SEED_RADIUS_MM + 2 * max(beyond, 0.0), margin_fraction=0.0)
    box = region(shape, spacing, [seed, mask], margin)
    x = robust_normalise(image[(slice(None),) + box])
    current, seed = mask[box], seed[box]
    fg = balls(shape, spacing, foreground, SEED_RADIUS_MM)[box]
    bg = balls(shape, spacing, background, SEED_RADIUS_MM)[box]
    near = balls(shape, spacing, [click], SAMPLE_RADIUS_MM)[box]

    # Intensities: the result (and the foreground clicks) against its close surroundings (and the background clicks).
    inside = ndimage.binary_erosion(current) if current.sum() > 50 else current
    ring = (ndimage.distance_transform_edt(~current, sampling=spacing) <= RING_MM) & ~current
    if is_foreground:
        samples_fg, samples_bg = inside | near, (ring & ~near) | bg | (border_mask(current.shape) & ~current)
    else:
        samples_fg, samples_bg = (inside & ~near) | fg, ring | near | bg
    intensity = IntensityModel().fit(x, samples_fg & ~samples_bg, samples_bg).foreground_probability(x)

    # Shape: the click's edge in its cone, the previous result elsewhere.
    weight, distance = _radial(box, spacing, centre, click, beyond)
    shape_prior = weight * prior_from_distance(distance, params.softness_mm)
    shape_prior += (1 - weight) * prior_from_distance(mask_signed_distance(current, spacing), params.softness_mm)
    probability = combine(intensity, shape_prior.astype(np.float32), params.intensity_weight)

    # Seeds: a foreground click keeps the whole result and may only add; a background click may only remove.
    if is_foreground:
        seeds_fg, seeds_bg = fg | seed | current, bg | (border_mask(current.shape) & ~current)
    else:
        seeds_fg, seeds_bg = fg & current, bg | seed | ~current
    cut = graph_cut(x, probability, seeds_fg & ~seeds_bg, seeds_bg, params)
    # What is kept: the additions connected to the click, or after a removal the parts connected to a foreground
    # click or lying outside the click's cone.
    cut = current | connected_to(cut, seed) if is_foreground else connected_to(cut, seeds_fg | (weight < 0.05))
    result = mask.copy()
    result[box] = cut
    return result


def segment_clicks(
    image: np.ndarray,
    spacing: Sequence[float],
    foreground_points: Sequence[Sequence[int]],
    background_points: Sequence[Sequence[int]],
    previous: ClickResult | None = None,
    roi: np.ndarray | None = None,
    params: GraphCutParams = CLICK_PARAMS,
) -> ClickResult:
    """Segment the clicked object, correcting ``previous`` click by click when the clicks extend it.

    Args:
        image: channels first (C, I, J, K), on its own values.
        spacing: voxel size in mm along I, J, K.
        foreground_points, background_points: IJK voxel indices, in the order they were placed.
        previous: the result before the latest click(s); ignored when the clicks do not extend its clicks.
        roi: limit the result to this mask when given.
        params: energy weights.
    """
    shape = image.shape[1:]
    fg_points = check_points(foreground_points, shape, "foreground")
    bg_points = check_points(background_points, shape, "background")
    if previous is not None and previous.mask.any() and previous.extended_by(fg_points, bg_points):
        mask = previous.mask
        new = [(p, True) for p in fg_points if p not in previous.foreground]
        new += [(p, False) for p in bg_points if p not in previous.background]
        for point, is_foreground in new:
            mask = correct(image, spacing, mask, point, is_foreground, fg_points, bg_points, params)
    elif fg_points:
        mask = first_segmentation(image, spacing, fg_points, bg_points, params)
    else:
        raise ValueError("no foreground click: click inside the object first")
    if roi is not None:
        mask = mask & roi
    return ClickResult(tuple(fg_points), tuple(bg_points), mask)
