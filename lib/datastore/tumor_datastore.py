"""Local datastore that refuses unusable uploads with a 4xx before anything is written."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

from lib.config import TumorConfig
from lib.datastore.names import InvalidNameError, check_name, check_tag
from lib.datastore.validation import InvalidUploadError, check_image, check_label, image_geometry, remap_label
from lib.transforms.volume_io import write_label

logger = logging.getLogger(__name__)

VOLUME_EXTENSIONS = ["*.nii.gz", "*.nii", "*.nrrd", "*.mha"]  # image files the datastore lists


class TumorDatastore(LocalDatastore):
    """:class:`LocalDatastore` with checks on every upload.

    * ``add_image``: the id must be a plain name, the file a complete volume within ``max_voxels`` with the
      model's channel count; an image that has labels is not replaced (409).
    * ``save_label``: the tag must be one of :data:`lib.datastore.names.TAGS`, and the label, whatever its tag, a
      complete file on its image's grid with values 0..K; when the client sends ``label_info`` (3D Slicer does),
      segment values are mapped to the app's label values by name.

    A refused upload raises ``HTTPException`` (4xx) naming the problem; the datastore is left unchanged.

    Args:
        studies: the studies folder.
        config: the app configuration.
        kwargs: passed to :class:`LocalDatastore`.
    """

    def __init__(self, studies: str, config: TumorConfig, **kwargs: Any) -> None:
        self.tumor = config
        super().__init__(studies, **kwargs)

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        try:
            check_name(image_id, "image id")
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        existing = self._datastore.objects.get(image_id)
        if existing is not None and self.get_labels_by_image_id(image_id):
            raise HTTPException(
                409, f"image {image_id!r} has labels and is not replaced: upload the new image under another id"
            )
        _, extension = self._to_id(os.path.basename(image_filename))
        if existing is not None and existing.image.ext != extension:
            # Both files would stay in the studies folder under one id.
            raise HTTPException(
                409, f"image {image_id!r} exists as a {existing.image.ext} file: replace it with a {existing.image.ext}"
            )
        try:
            check_image(image_filename, self.tumor.channels, self.tumor.max_voxels)
        except InvalidUploadError as e:
            raise HTTPException(422, f"image refused: {e}") from e
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        try:
            check_tag(label_tag)
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"image {image_id!r} is not in the datastore")
        image_path = self.get_image_uri(image_id)
        try:
            array = check_label(label_filename, image_path, num_labels=255, max_voxels=self.tumor.max_voxels)
            if label_info and label_info.get("label_info"):
                array = remap_label(array, label_info["label_info"], self.tumor.labels)
            elif array.max() > len(self.tumor.labels):
                raise InvalidUploadError(
                    f"label holds value {int(array.max())}; accepted values are 0..{len(self.tumor.labels)}"
                )
        except InvalidUploadError as e:
            raise HTTPException(422, f"label refused: {e}") from e
        geometry = image_geometry(image_path)
        with tempfile.TemporaryDirectory() as folder:
            path = write_label(array, geometry, os.path.join(folder, f"{image_id}.nii.gz"))
            return super().save_label(image_id, path, label_tag, label_info)

    def remove_image(self, image_id: str) -> None:
        if image_id not in self._datastore.objects:
            raise HTTPException(404, f"image {image_id!r} is not in the datastore")
        super().remove_image(image_id)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        if not self.get_label_uri(label_id, label_tag):
            raise HTTPException(404, f"image {label_id!r} has no {label_tag!r} label")
        super().remove_label(label_id, label_tag)
