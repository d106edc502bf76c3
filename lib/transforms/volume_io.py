"""Read images and labels into channel-first arrays in voxel (i, j, k) order, and write labels back.

Arrays keep the file's own voxel order (no reorientation), so a result written with :func:`write_label` on the
image's :class:`Geometry` lies on exactly the image's grid: same size, spacing, origin and direction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from monai.transforms import MapTransform, Transform

from lib.transforms.geometry import Geometry
from lib.transforms.sequences import MissingSequenceError, sequence_files, split_sequence_name

logger = logging.getLogger(__name__)


class VolumeReadError(ValueError):
    """A file is not a readable 3D (or 3D multi-channel) volume."""


def read_volume(path: str) -> tuple[np.ndarray, Geometry]:
    """Read a 3D scalar, 3D vector or 4D (last axis = channels) volume.

    Args:
        path: an image file SimpleITK can read (NIfTI, NRRD, MHA, ...).

    Returns:
        ``(array, geometry)`` with ``array`` shaped (C, I, J, K).

    Raises:
        VolumeReadError: when the file cannot be read or is not a volume.
    """
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        # ITK's message names the server's file and ITK's source files: logged here, never sent to the client.
        logger.info("Cannot read %s: %s", path, str(e).strip()[-300:])
        raise VolumeReadError(
            f"cannot read {os.path.basename(str(path))} as an image (not a NIfTI, NRRD or MHA volume, or damaged)"
        ) from e
    dim = image.GetDimension()
    if dim not in (3, 4):
        raise VolumeReadError(f"{os.path.basename(str(path))} has {dim} dimensions; a 3D volume is needed")
    if dim == 4 and image.GetNumberOfComponentsPerPixel() > 1:
        raise VolumeReadError(f"{os.path.basename(str(path))} is a 4D vector image; not supported")
    geometry = Geometry.of(image)
    array = sitk.GetArrayViewFromImage(image)
    if dim == 4:  # (C, K, J, I)
        array = np.transpose(array, (0, 3, 2, 1))
    elif image.GetNumberOfComponentsPerPixel() > 1:  # (K, J, I, C)
        array = np.transpose(array, (3, 2, 1, 0))
    else:  # (K, J, I)
        array = np.transpose(array, (2, 1, 0))[None]
    return np.ascontiguousarray(array), geometry


def write_label(label: np.ndarray, geometry: Geometry, path: str) -> str:
    """Write an (I, J, K) uint8 label on ``geometry`` to ``path`` (format from the extension)."""
    label = np.asarray(label)
    if tuple(label.shape) != geometry.size:
        raise ValueError(f"label shape {label.shape} does not match the image size {geometry.size}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(label.astype(np.uint8), (2, 1, 0))))
    sitk.WriteImage(geometry.apply_to(image), path, useCompression=True)
    return path


def _array(image: sitk.Image, path: str) -> np.ndarray:
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise VolumeReadError(f"{os.path.basename(path)} must be a single-channel 3D volume")
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def on_grid(path: str, reference: sitk.Image) -> np.ndarray:
    """The single-channel volume at ``path`` resampled (linearly) onto ``reference``'s grid, as (I, J, K)."""
    image = sitk.ReadImage(path, sitk.sitkFloat32)
    if image.GetDimension() == 3 and Geometry.of(reference).mismatch(Geometry.of(image)) is not None:
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return _array(image, path)


def read_case(path: str, sequences: Sequence[str]) -> tuple[np.ndarray, Geometry]:
    """Read a case as float32 (C, I, J, K) on its first sequence's grid.

    With ``sequences``, a file named as the first sequence brings its case's other sequences (resampled onto its
    grid when theirs differs); any other file is read as it is (an already stacked multi-channel volume).
    """
    if not sequences or split_sequence_name(path, sequences[0]) is None:
        array, geometry = read_volume(path)
        return array.astype(np.float32, copy=False), geometry
    try:
        files = sequence_files(path, sequences)
    except MissingSequenceError as e:
        raise VolumeReadError(str(e)) from e
    try:
        reference = sitk.ReadImage(files[0], sitk.sitkFloat32)
        channels = [_array(reference, files[0])] + [on_grid(f, reference) for f in files[1:]]
    except RuntimeError as e:
        raise VolumeReadError(f"cannot read the sequences of {os.path.basename(path)} (damaged or not volumes)") from e
    return np.ascontiguousarray(np.stack(channels)), Geometry.of(reference)


class LoadVolume(Transform):
    """Read a volume as a float32 (C, I, J, K) array and its :class:`Geometry`.

    Args:
        channels: expected number of channels; None accepts any.
        sequences: a multi-sequence case's sequences (:func:`read_case`); empty for one file per case.
    """

    def __init__(self, channels: int | None = None, sequences: Sequence[str] = ()) -> None:
        self.channels = channels
        self.sequences = tuple(sequences)

    def __call__(self, path: str) -> tuple[np.ndarray, Geometry]:
        array, geometry = read_case(path, self.sequences)
        if self.channels is not None and array.shape[0] != self.channels:
            raise VolumeReadError(
                f"{os.path.basename(str(path))} has {array.shape[0]} channel(s); the model takes {self.channels}"
            )
        return array.astype(np.float32, copy=False), geometry


class LoadVolumed(MapTransform):
    """Dictionary wrapper of :class:`LoadVolume`: ``d[key]`` path -> array, geometry in ``d[f"{key}_geometry"]``.

    Keys after the first (labels) must lie on the first key's grid and have one channel.

    Args:
        keys: image key first, then label keys.
        channels: expected channels of the first key.
        sequences: the image's sequences when a case is several files (:func:`read_case`).
    """

    def __init__(self, keys: Sequence[Hashable], channels: int | None = None, sequences: Sequence[str] = ()) -> None:
        super().__init__(keys)
        self.image_loader = LoadVolume(channels, sequences)
        self.label_loader = LoadVolume(1)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        reference: Geometry | None = None
        for key in self.key_iterator(d):
            loader = self.image_loader if reference is None else self.label_loader
            d[key], geometry = loader(str(d[key]))
            if reference is None:
                reference = geometry
            elif (problem := reference.mismatch(geometry)) is not None:
                raise VolumeReadError(f"{key} does not lie on the image grid: {problem}")
            d[f"{key}_geometry"] = geometry
        return d
