"""Small geometric helpers on binary masks, shared by click guidance, the click tool and the simulated annotator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def deepest_point(mask: np.ndarray, spacing: Sequence[float]) -> tuple[int, ...]:
    """The voxel of ``mask`` farthest (in mm, with ``spacing`` per axis) from its boundary; the array's edge counts
    as boundary. The first such voxel in C order when several tie."""
    padded = np.pad(np.asarray(mask, bool), 1)
    depth = ndimage.distance_transform_edt(padded, sampling=tuple(spacing))[(slice(1, -1),) * mask.ndim]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(depth)), mask.shape))


def border_mask(shape: Sequence[int]) -> np.ndarray:
    """True on the outermost layer of voxels of an array of ``shape``."""
    border = np.ones(tuple(shape), bool)
    border[tuple(slice(1, -1) for _ in shape)] = False
    return border
