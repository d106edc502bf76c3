"""Resample channel-first volumes to a target spacing in voxel space, and back to the original grid.

Resampling changes only the number of voxels along each axis (the physical extent and direction are kept), as
nnU-Net does; the way back is a resize to the original size, so outputs land exactly on the input grid.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Resize

from lib.transforms.geometry import Geometry


def resampled_shape(geometry: Geometry, spacing: Sequence[float]) -> tuple[int, int, int]:
    """Voxels along i, j, k after resampling ``geometry`` to ``spacing`` (mm)."""
    return tuple(  # type: ignore[return-value]
        max(1, int(round(n * s / t))) for n, s, t in zip(geometry.size, geometry.spacing, spacing)
    )


def resize(array: torch.Tensor | np.ndarray, shape: Sequence[int], mode: str) -> torch.Tensor:
    """Resize a (C, I, J, K) array to ``shape``; ``mode`` is ``"trilinear"`` or ``"nearest"``."""
    tensor = torch.as_tensor(array)
    if tuple(tensor.shape[1:]) == tuple(shape):
        return tensor
    resized = Resize(spatial_size=tuple(shape), mode=mode, anti_aliasing=False)(tensor)
    return torch.as_tensor(resized)


class ResampleToSpacingd(MapTransform):
    """Resample ``keys`` to ``spacing`` using the geometry stored by ``LoadVolumed`` under ``f"{ref}_geometry"``.

    Args:
        keys: keys to resample.
        spacing: target spacing in mm along i, j, k.
        modes: interpolation per key (``"trilinear"`` for images, ``"nearest"`` for labels).
        ref: key whose geometry defines the source grid.
    """

    def __init__(self, keys: Sequence[Hashable], spacing: Sequence[float], modes: Sequence[str], ref: str = "image"):
        super().__init__(keys)
        self.spacing = tuple(spacing)
        self.modes = tuple(modes)
        self.ref = ref

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        shape = resampled_shape(d[f"{self.ref}_geometry"], self.spacing)  # type: ignore[arg-type]
        for key, mode in zip(self.key_iterator(d), self.modes):
            d[key] = resize(d[key], shape, mode)  # type: ignore[arg-type]
        return d
