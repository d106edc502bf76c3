"""Where the annotator's marks say the object is: signed distances in mm (negative inside) turned into a prior.

Annotators scribble on a few slices of the acquisition plane. Between two scribbled slices the object's outline is
interpolated from the in-plane signed distances of both (shape-based interpolation, Raya & Udupa 1990); beyond the
outermost scribbled slices the outline shrinks by ``taper`` mm per mm. Marks spread in 3D use 3D distances.
Without background marks (on a slice, or at all) the outline is the foreground marks themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

FAR_MM = 100.0  # distance used where a class has no mark at all


def _distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, FAR_MM, np.float32)
    return np.minimum(ndimage.distance_transform_edt(~mask, sampling=spacing), FAR_MM).astype(np.float32)


def _outline(foreground: np.ndarray, background: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    inside = _distance(foreground, spacing)
    return inside - _distance(background, spacing) if background.any() else inside


def slice_axis(foreground: np.ndarray, spacing: Sequence[float]) -> int | None:
    """The axis along which the foreground marks lie on separate slices, or None for 3D marks.

    Marks are slice-wise when they occupy at most half of the slices they span along some axis; among such axes the
    one with the fewest marked slices wins (then the coarsest spacing).
    """
    candidates = []
    for axis in range(foreground.ndim):
        others = tuple(a for a in range(foreground.ndim) if a != axis)
        marked = np.flatnonzero(foreground.any(axis=others))
        span = int(marked[-1] - marked[0] + 1)
        if len(marked) == 1 or len(marked) <= span / 2:
            candidates.append((len(marked), -spacing[axis], axis))
    return min(candidates)[2] if candidates else None


def signed_distance(
    foreground: np.ndarray, background: np.ndarray, spacing: Sequence[float], taper: float = 1.0
) -> np.ndarray:
    """Signed distance (mm, negative inside) of the object the marks outline, as float32."""
    if not foreground.any():
        raise ValueError("the shape prior needs at least one foreground mark")
    axis = slice_axis(foreground, spacing)
    if axis is None:
        return _outline(foreground, background, spacing)

    fg = np.moveaxis(foreground, axis, -1)
    bg = np.moveaxis(background, axis, -1)
    in_plane = [s for a, s in enumerate(spacing) if a != axis]
    marked = np.flatnonzero(fg.any(axis=(0, 1)))
    per_slice = {int(k): _outline(fg[..., k], bg[..., k], in_plane) for k in marked}
    out = np.empty(fg.shape, np.float32)
    for k in range(fg.shape[-1]):
        below, above = marked[marked <= k], marked[marked >= k]
        if len(below) and len(above):
            k1, k2 = int(below[-1]), int(above[0])
            w = 0.0 if k1 == k2 else (k - k1) / (k2 - k1)
            out[..., k] = (1 - w) * per_slice[k1] + w * per_slice[k2]
        else:
            nearest = int(below[-1]) if len(below) else int(above[0])
            out[..., k] = per_slice[nearest] + taper * abs(k - nearest) * spacing[axis]
    return np.moveaxis(out, -1, axis)


def mask_signed_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Signed distance (mm, negative inside) to the boundary of ``mask``."""
    return _distance(mask, spacing) - _distance(~mask, spacing)


def prior_from_distance(distance: np.ndarray, softness_mm: float) -> np.ndarray:
    """P(foreground) from a signed distance: 0.5 on the outline, falling off over ``softness_mm``."""
    return (1.0 / (1.0 + np.exp(np.clip(distance / softness_mm, -30.0, 30.0)))).astype(np.float32)
