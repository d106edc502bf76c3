"""Voxel grid of an image: the facts a label must share with its image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """A 3D voxel grid in the image's own (i, j, k) order.

    Attributes:
        size: voxels along i, j, k.
        spacing: mm between voxel centres along i, j, k.
        origin: physical (LPS, mm) position of voxel (0, 0, 0).
        direction: 3x3 direction cosines, row-major as SimpleITK gives them.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> Geometry:
        """The spatial grid of a SimpleITK image or read header (3D, or the first three axes of a 4D image)."""
        dim = image.GetDimension()
        if dim not in (3, 4):
            raise ValueError(f"expected a 3D image (or 3D + channels), got {dim} dimensions")
        direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
        return cls(
            size=tuple(int(s) for s in image.GetSize()[:3]),  # type: ignore[arg-type]
            spacing=tuple(float(s) for s in image.GetSpacing()[:3]),  # type: ignore[arg-type]
            origin=tuple(float(o) for o in image.GetOrigin()[:3]),  # type: ignore[arg-type]
            direction=tuple(direction.ravel().tolist()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Give ``image`` (same size) this grid's spacing, origin and direction; returns ``image``."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def mismatch(self, other: Geometry, tolerance: float = 1e-3) -> str | None:
        """Describe how ``other`` differs from this grid, or None when they match.

        Args:
            other: the grid to compare.
            tolerance: relative tolerance for spacing, and absolute tolerance (mm, or cosine) for origin and
                direction; file formats round these differently.
        """
        if self.size != other.size:
            return f"size {other.size} differs from {self.size}"
        if not np.allclose(self.spacing, other.spacing, rtol=tolerance, atol=0):
            return f"spacing {other.spacing} differs from {self.spacing}"
        if not np.allclose(self.origin, other.origin, atol=max(tolerance, tolerance * max(self.spacing))):
            return f"origin {other.origin} differs from {self.origin}"
        if not np.allclose(self.direction, other.direction, atol=tolerance):
            return f"direction {other.direction} differs from {self.direction}"
        return None
