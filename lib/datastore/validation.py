"""Checks on uploaded images and labels, so nothing unusable enters the datastore or a training run."""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from lib.shown import shown
from lib.transforms.geometry import Geometry
from lib.transforms.resample import resampled_shape
from lib.transforms.sequences import MissingSequenceError, sequence_files, split_sequence_name
from lib.transforms.volume_io import VolumeReadError, read_case, read_volume

logger = logging.getLogger(__name__)
NIFTI_HEADER_BYTES = 348  # NIfTI-1; the voxels follow at vox_offset >= 352
EXTRA_BYTES = 2**20  # NIfTI extensions after the header; more than this beyond the declared voxels is refused
HEADER_BYTES = 2**16  # NRRD and MetaImage headers are text at the start of the file


SPACING_MM = (0.01, 50.0)  # the voxel sizes of scans, from micro-CT to thick-slice MR


class InvalidUploadError(ValueError):
    """An uploaded image or label cannot be used; the message says why."""


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        logger.info("Cannot read the header of %s: %s", path, str(e).strip()[-300:])
        raise InvalidUploadError(
            f"cannot read {os.path.basename(path)} (not a NIfTI, NRRD or MHA volume, or damaged)"
        ) from e
    return reader


def check_file(path: str, max_voxels: int) -> None:
    """Check, before reading the voxels, that the declared volume is within ``max_voxels`` and the file complete.

    ITK reads a truncated NIfTI file without an error and fills the missing voxels with zeros, so NIfTI files are
    checked here: the gzip stream must be intact (CRC, end marker) and hold the declared voxels. NRRD and MHA
    readers refuse truncated files themselves.
    """
    reader = _header(path)
    voxels = math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
    if voxels > max_voxels:
        raise InvalidUploadError(
            f"{os.path.basename(path)} declares {'x'.join(map(str, reader.GetSize()))} voxels "
            f"({voxels:,}); at most {max_voxels:,} are accepted (--conf max_voxels)"
        )
    name = path.lower()
    if name.endswith((".nrrd", ".mha", ".mhd")):
        _check_data_is_inside(path)
    if not name.endswith((".nii", ".nii.gz")):
        return
    expected = NIFTI_HEADER_BYTES + voxels * _bytes_per_component(reader)
    if name.endswith(".gz"):
        size = 0
        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(2**22):
                    size += len(chunk)
                    if size > expected + EXTRA_BYTES:  # a compression bomb: stop before decompressing it all
                        raise InvalidUploadError(
                            f"{os.path.basename(path)} holds more data than the {expected:,} bytes its header declares"
                        )
        except (OSError, EOFError, zlib.error) as e:
            raise InvalidUploadError(f"{os.path.basename(path)} is damaged or truncated ({e})") from None
    else:
        size = os.path.getsize(path)
    if size < expected:
        raise InvalidUploadError(
            f"{os.path.basename(path)} is truncated: it holds {size:,} bytes of the {expected:,} its header declares"
        )


def _check_data_is_inside(path: str) -> None:
    """Refuse NRRD and MetaImage headers whose voxels are in another file (``data file:``, ``ElementDataFile``):
    reading them would read whatever file the header names, anywhere on the server."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    header = head.split(b"\n\n", 1)[0] if path.lower().endswith(".nrrd") else head
    for line in header.splitlines():
        key, _, value = line.decode("latin-1").partition(":" if path.lower().endswith(".nrrd") else "=")
        key = key.strip().lower().replace(" ", "")
        if key in ("datafile", "elementdatafile") and value.strip().upper() != "LOCAL":
            raise InvalidUploadError(
                f"{os.path.basename(path)} keeps its voxels in another file; send a single-file volume"
            )
        if key == "elementdatafile":
            return  # the voxels follow this line in a MetaImage file


def _bytes_per_component(reader: sitk.ImageFileReader) -> int:
    return sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), 1).GetSizeOfPixelComponent()


def image_geometry(path: str) -> Geometry:
    """The grid of an image file, read from its header only."""
    reader = _header(path)
    try:
        return Geometry.of(reader)  # the header reader has the same accessors as an image
    except ValueError as e:
        raise InvalidUploadError(f"{os.path.basename(path)}: {e}") from e


def check_image(
    path: str, channels: int, max_voxels: int, sequences: Sequence[str] = (), model_spacing: Sequence[float] = ()
) -> Geometry:
    """Check that ``path`` is a complete volume within ``max_voxels``, with ``channels`` channels, at least 2
    voxels per axis and a scan's spacing (:data:`SPACING_MM`); with ``sequences``, the case it is the first sequence
    of (every file checked). With ``model_spacing``, it must also be within ``max_voxels`` once resampled to it:
    a small file whose header declares huge voxels would otherwise become a huge volume for the network."""
    try:
        files = sequence_files(path, sequences) if sequences and split_sequence_name(path, sequences[0]) else [path]
    except MissingSequenceError as e:
        raise InvalidUploadError(str(e)) from e
    for file in files:
        check_file(file, max_voxels)
    try:
        array, geometry = read_case(path, sequences)
    except VolumeReadError as e:
        raise InvalidUploadError(str(e)) from e
    if array.shape[0] != channels:
        needs = f"the sequences {', '.join(sequences)} as {channels} channels" if sequences else f"{channels}"
        raise InvalidUploadError(f"image has {array.shape[0]} channel(s); this app's model takes {needs}")
    if min(geometry.size) < 2:
        raise InvalidUploadError(f"image size {geometry.size} is not a 3D volume")
    low, high = SPACING_MM
    if not all(low <= s <= high for s in geometry.spacing):
        spacing = ", ".join(f"{s:.3g}" for s in geometry.spacing)
        raise InvalidUploadError(f"image spacing ({spacing}) mm is not a scan's: each must be {low} to {high} mm")
    if model_spacing:
        resampled = math.prod(resampled_shape(geometry, model_spacing))
        if resampled > max_voxels:
            raise InvalidUploadError(
                f"image would be {resampled} voxels at the model's spacing of {' x '.join(map(str, model_spacing))} "
                f"mm; at most {max_voxels} are accepted (--conf max_voxels)"
            )
    if not np.isfinite(array).all():
        raise InvalidUploadError("image holds NaN or infinite values")
    return geometry


def whole_values(array: np.ndarray) -> list[int]:
    """The distinct values of a labelmap, which must be whole and finite.

    Raises:
        ValueError: ``holds ...; a label holds whole numbers`` (the caller names the file before it).
    """
    values = np.unique(array)
    if not np.isfinite(values).all():
        raise ValueError("holds NaN or infinite values; a label holds whole numbers")
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise ValueError(f"holds values {fractional[:10].tolist()}; a label holds whole numbers")
    return [int(v) for v in values.tolist()]


def check_label(label_path: str, image_path: str, num_labels: int, max_voxels: int) -> np.ndarray:
    """Check a label against its image: complete file, same grid, one channel, integer values in 0..num_labels.

    Returns:
        The label as an (I, J, K) uint8 array.
    """
    try:
        check_file(label_path, max_voxels)
    except InvalidUploadError as e:
        raise InvalidUploadError(f"label: {e}") from e
    try:
        array, geometry = read_volume(label_path)
    except VolumeReadError as e:
        raise InvalidUploadError(f"label: {e}") from e
    if array.shape[0] != 1:
        raise InvalidUploadError(f"label has {array.shape[0]} channels; a single-channel labelmap is needed")
    problem = image_geometry(image_path).mismatch(geometry)
    if problem is not None:
        raise InvalidUploadError(f"label does not lie on its image's grid: {problem}")
    try:
        values = whole_values(array)
    except ValueError as e:
        raise InvalidUploadError(f"label {e}") from None
    bad = [v for v in values if not 0 <= v <= num_labels]
    if bad:
        raise InvalidUploadError(f"label holds values {bad[:10]}; accepted values are 0 (background) to {num_labels}")
    return array[0].astype(np.uint8)


LABEL_INFO_SHAPE = 'label_info must be a list of {"name": text, "idx" or "id": whole number}, as 3D Slicer sends'


def segment_values(label_info: object) -> list[tuple[str, int]]:
    """Name and labelmap value of each segment that a client's ``label_info`` describes.

    3D Slicer sends ``[{"name", "idx"}]`` with a submitted label and ``[{"name", "id"}]`` with scribbles; either
    key is read, and an entry that holds both must give one value. Values are 1..255 (a labelmap's bytes; 0 is
    what no segment marks, and may only be named ``background``), and one value has one name; one name may have
    several values (two segments of one name).

    Raises:
        ValueError: naming the malformed entry.
    """
    if not isinstance(label_info, list) or not all(isinstance(entry, dict) for entry in label_info):
        raise ValueError(LABEL_INFO_SHAPE)
    segments: list[tuple[str, int]] = []
    for entry in label_info:
        name = entry.get("name")
        if not isinstance(name, str):
            raise ValueError(f"label_info: segment name {shown(name)} is not text")
        segment = f"label_info: segment {shown(name)}"
        given = [entry[key] for key in ("idx", "id") if key in entry]
        if not given:
            raise ValueError(f"{segment} has no value (idx or id)")
        for value in given:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{segment} has value {shown(value)}; a whole number is needed")
            if not (0 < value < 256 or (value == 0 and name.lower() == "background")):
                raise ValueError(f"{segment} has value {value}; values 1..255 are accepted")
        if len(set(given)) > 1:
            raise ValueError(f"{segment} has idx {given[0]} and id {given[1]}; send one value")
        named = next((other for other, value in segments if value == given[0]), None)
        if named is not None and named.lower() != name.lower():
            raise ValueError(f"label_info: value {given[0]} is given to both {shown(named)} and {shown(name)}")
        segments.append((name, given[0]))
    return segments


def remap_label(array: np.ndarray, label_info: object, labels: Sequence[str]) -> np.ndarray:
    """Map segment values to the app's label values by name.

    3D Slicer numbers the exported segments 1..N in the order they appear in the segmentation; ``label_info``
    (``[{"name", "idx"}]``) says which name each value has. The app's value for ``labels[i]`` is ``i + 1``.

    Raises:
        InvalidUploadError: for malformed ``label_info``, a segment name the app does not know, or a value that
            ``label_info`` leaves out.
    """
    wanted = {name.lower(): i + 1 for i, name in enumerate(labels)}
    mapping = np.zeros(256, dtype=np.uint8)
    described = {0}
    try:
        segments = segment_values(label_info)
    except ValueError as e:
        raise InvalidUploadError(str(e)) from None
    for name, value in segments:
        if name.lower() == "background":  # voxels the annotator marked as background
            described.add(value)
            continue
        if name.lower() not in wanted:
            raise InvalidUploadError(
                f"segment {name!r} is not a label of this app; accepted: {', '.join(labels)} "
                "(rename the segment or remove it before submitting)"
            )
        mapping[value] = wanted[name.lower()]
        described.add(value)
    present = set(np.unique(array).tolist())
    unknown = sorted(present - described)
    if unknown:
        raise InvalidUploadError(f"label values {unknown} have no entry in label_info")
    return mapping[array]


def app_label(
    label_path: str, image_path: str, labels: Sequence[str], label_info: dict[str, Any] | None, max_voxels: int
) -> np.ndarray:
    """A submitted label as the app's values: checked against its image, segments mapped by name.

    Args:
        label_path: the submitted labelmap.
        image_path: its image.
        labels: the app's label names (value ``i + 1`` for ``labels[i]``).
        label_info: the submit's params; its ``label_info`` (``[{"name", "idx"}]``, as 3D Slicer sends) names the
            segment values. Without it, values must already be 0..K.
        max_voxels: the largest volume accepted.
    """
    entries = (label_info or {}).get("label_info")
    named = entries is not None and entries != []  # JSON null or [] name nothing; other values must be a list
    # Segments named by label_info may carry any value 1..255 (3D Slicer numbers them in its own order).
    array = check_label(label_path, image_path, num_labels=255 if named else len(labels), max_voxels=max_voxels)
    return remap_label(array, entries, labels) if named else array
