"""Deepest point and border of masks, on anisotropic grids."""

from __future__ import annotations

import numpy as np

from lib.transforms.masks import border_mask, deepest_point


def test_deepest_point_is_measured_in_mm() -> None:
    # Cube A (5 voxels a side) and slab B (9 x 9 x 3 voxels). In voxels A's centre is deepest (3 voxels from its
    # faces, B's centre only 2 along k); with 3 mm slices B's centre is 5 mm deep and A's only 3 mm.
    mask = np.zeros((30, 12, 7), bool)
    mask[1:6, 1:6, 1:6] = True
    mask[10:19, 1:10, 2:5] = True
    assert deepest_point(mask, (1.0, 1.0, 1.0)) == (3, 3, 3)
    assert deepest_point(mask, (1.0, 1.0, 3.0)) == (14, 5, 3)
    # An L of two bars: the thick bar holds the deepest point, however long the thin bar.
    ell = np.zeros((20, 20), bool)
    ell[:, :3] = True
    ell[:7, :7] = True
    assert deepest_point(ell, (1.0, 1.0)) == (3, 3)


def test_the_array_edge_counts_as_boundary() -> None:
    full = np.ones((5, 5, 5), bool)
    assert deepest_point(full, (1.0, 1.0, 1.0)) == (2, 2, 2)


def test_border_mask_is_the_outer_layer() -> None:
    border = border_mask((4, 3, 5))
    assert border.sum() == 4 * 3 * 5 - 2 * 1 * 3
    assert not border[1:-1, 1:-1, 1:-1].any() and border[0].all() and border[:, :, -1].all()
