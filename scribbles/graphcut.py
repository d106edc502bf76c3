"""Refinement by a 3D graph cut at native resolution on a region around the annotator's marks.

Energy (Boykov & Jolly 2001): unaries from P(foreground) = intensity model x shape prior (geometric mean), an
edge-aware pairwise term exp(-|I_p - I_q|^2 / 2 sigma^2) on the normalised channels (numpymaxflow, 6-connected),
and the marks as hard seeds. The result keeps only the parts connected to a foreground mark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpymaxflow
from scipy import ndimage

from lib.transforms.masks import border_mask
from scribbles.intensity import IntensityModel, robust_normalise
from scribbles.shape_prior import mask_signed_distance, prior_from_distance

Box = tuple[slice, ...]


@dataclass(frozen=True)
class GraphCutParams:
    """Weights of the refinement energy (defaults measured with ``benchmarks/interactive``)."""

    intensity_weight: float = 0.5  # share of the intensity model in P(foreground); the shape prior has the rest
    softness_mm: float = 3.0  # how far from the outline the shape prior still hesitates
    taper: float = 1.0  # shrink per mm beyond the outermost marked slice
    smoothness: float = 2.0  # weight of the pairwise term
    sigma: float = 0.5  # intensity difference (in robust standard deviations) at which edges are cut cheaply
    margin_mm: float = 10.0  # region margin around the marks
    margin_fraction: float = 0.5  # ... or this fraction of the foreground marks' extent, whichever is larger
    prior_reach_mm: float = 10.0  # beyond this distance from any mark, an existing segmentation dominates the prior
    min_speck_voxels: int = 10  # without a foreground mark, smaller leftover parts are dropped


# Scribbles: 2 (on STS, 5 was less accurate and up to 5x slower where the unaries hesitate; 1 was more accurate on
# STS but leaked on a glioblastoma of the held-out set). Clicks give few, small seeds: a weaker pairwise term keeps
# the cut from shrinking onto them.
SCRIBBLE_PARAMS = GraphCutParams()
CLICK_PARAMS = GraphCutParams(smoothness=1.0)


def region(shape: Sequence[int], spacing: Sequence[float], masks: Sequence[np.ndarray], params: GraphCutParams) -> Box:
    """The box around the union of ``masks`` grown by the margin, clipped to the image."""
    union = np.logical_or.reduce([m for m in masks if m is not None and m.any()])
    box = []
    for axis, extent in enumerate(shape):
        others = tuple(a for a in range(len(shape)) if a != axis)
        marked = np.flatnonzero(union.any(axis=others))
        lo, hi = int(marked[0]), int(marked[-1]) + 1
        margin = int(np.ceil(max(params.margin_mm / spacing[axis], params.margin_fraction * (hi - lo))))
        box.append(slice(max(lo - margin, 0), min(hi + margin, extent)))
    return tuple(box)


def roi_mask(shape: Sequence[int], roi: Sequence[int] | None) -> np.ndarray | None:
    """The Slicer ROI ``[i0, i1, j0, j1, k0, k1]`` (corners possibly unsorted, inclusive) as a mask; None if empty."""
    if not roi:
        return None
    if len(roi) != 2 * len(shape):
        raise ValueError(f"roi must hold {2 * len(shape)} voxel indices [i0, i1, j0, j1, k0, k1], got {list(roi)}")
    mask = np.zeros(shape, bool)
    box = []
    for axis, extent in enumerate(shape):
        lo, hi = sorted(int(v) for v in roi[2 * axis : 2 * axis + 2])
        lo, hi = max(lo, 0), min(hi + 1, extent)
        if lo >= hi:
            raise ValueError(f"roi {list(roi)} lies outside the image of size {list(shape)}")
        box.append(slice(lo, hi))
    mask[tuple(box)] = True
    return mask


def combine(intensity: np.ndarray, shape: np.ndarray, intensity_weight: float) -> np.ndarray:
    """Geometric-mean pooling of two foreground probabilities (float32)."""
    eps = 1e-6
    log_fg = intensity_weight * np.log(intensity + eps) + (1 - intensity_weight) * np.log(shape + eps)
    log_bg = intensity_weight * np.log(1 - intensity + eps) + (1 - intensity_weight) * np.log(1 - shape + eps)
    return (1.0 / (1.0 + np.exp(np.clip(log_bg - log_fg, -30.0, 30.0)))).astype(np.float32)


def connected_to(mask: np.ndarray, seeds: np.ndarray, min_voxels: int = 1) -> np.ndarray:
    """The connected components of ``mask`` that touch ``seeds`` and hold at least ``min_voxels`` voxels."""
    components, _ = ndimage.label(mask)
    keep = np.unique(components[seeds & mask])
    keep = keep[(keep > 0) & (np.bincount(components.ravel())[keep] >= min_voxels)]
    return np.isin(components, keep)


def graph_cut(
    image: np.ndarray,
    foreground_probability: np.ndarray,
    foreground: np.ndarray,
    background: np.ndarray,
    params: GraphCutParams,
) -> np.ndarray:
    """Min-cut of the energy on ``image`` (normalised, C x ...) with the marks as hard seeds; boolean mask."""
    probability = np.stack([1 - foreground_probability, foreground_probability]).astype(np.float32)
    seeds = np.stack([background, foreground]).astype(np.float32)
    cut = numpymaxflow.maxflow_interactive(
        np.ascontiguousarray(image, np.float32), probability, seeds, params.smoothness, params.sigma, 6
    )
    return cut.reshape(foreground.shape) > 0


def refine(
    image: np.ndarray,
    spacing: Sequence[float],
    foreground: np.ndarray,
    background: np.ndarray,
    shape_distance: Callable[[np.ndarray, np.ndarray, Sequence[float]], np.ndarray],
    existing: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    params: GraphCutParams = SCRIBBLE_PARAMS,
) -> np.ndarray:
    """Segment the object the marks point at; returns a boolean mask on the full image grid.

    Args:
        image: the image, channels first (C, I, J, K), on its own values.
        spacing: voxel size in mm along I, J, K.
        foreground, background: the annotator's marks (boolean, I x J x K); ``background`` may be empty.
        shape_distance: callable ``(foreground, background, spacing) -> signed distance (mm)`` on the region,
            the prior that the marks give (scribbles: slice interpolation; clicks: balls around the points).
        existing: the current segmentation of the object (pre-segmentation or previous result), refined when given.
        roi: limit the result to this mask when given.
        params: energy weights.
    """
    existing = existing if existing is not None and existing.any() else None
    if not foreground.any() and existing is None:
        raise ValueError("no foreground mark: mark the object at least once (or refine an existing segmentation)")
    box = region(foreground.shape, spacing, [foreground, background, existing, roi], params)
    fg, bg = foreground[box], background[box] & ~foreground[box]
    x = robust_normalise(image[(slice(None),) + box])

    # Background the annotator did not mark: the box border, away from the foreground marks.
    border = border_mask(fg.shape)
    seeds_bg = bg | (border & ~fg) if not bg.any() else bg
    current = existing[box] if existing is not None else None

    samples_fg = fg if fg.any() else ndimage.binary_erosion(current) & ~bg
    if samples_fg.sum() < 2:
        samples_fg = current & ~bg
    model = IntensityModel().fit(x, samples_fg, seeds_bg)
    intensity = model.foreground_probability(x)

    # The marks' shape prior (no foreground mark: background wherever the marks reach).
    shape = (
        prior_from_distance(shape_distance(fg, bg, spacing), params.softness_mm)
        if fg.any()
        else np.zeros(fg.shape, np.float32)
    )
    if current is not None:
        # Near the new marks they decide; far from them the existing segmentation stands.
        from_existing = prior_from_distance(mask_signed_distance(current, spacing), params.softness_mm)
        reach = np.exp(-ndimage.distance_transform_edt(~(fg | bg), sampling=spacing) / params.prior_reach_mm)
        shape = (reach * shape + (1 - reach) * from_existing).astype(np.float32)
    probability = combine(intensity, shape, params.intensity_weight)

    cut = graph_cut(x, probability, fg, seeds_bg, params)
    # Parts connected to a foreground mark; with none, the parts of the existing segmentation that survive
    # (specks left around a background scribble are dropped).
    cut = connected_to(cut, fg) if fg.any() else connected_to(cut, current, params.min_speck_voxels)
    result = np.zeros(foreground.shape, bool)
    result[box] = cut
    if existing is not None:
        # Outside the refined region the existing segmentation is kept as it was.
        outside = np.ones(foreground.shape, bool)
        outside[box] = False
        result |= existing & outside
    if roi is not None:
        result &= roi
    return result
