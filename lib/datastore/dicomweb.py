"""DICOMweb datastore (a PACS) with the folder datastore's checks on submitted labels."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore

from lib.config import TumorConfig
from lib.datastore.names import InvalidNameError, check_tag
from lib.datastore.tumor_datastore import checked_label

logger = logging.getLogger(__name__)


class TumorDicomDatastore(DICOMWebDatastore):
    """:class:`DICOMWebDatastore` whose submitted labels go through :func:`checked_label` before anything is stored
    as DICOM SEG, and whose counts include a submit at once.

    Args:
        config: the app configuration.
        kwargs: passed to :class:`DICOMWebDatastore`.
    """

    def __init__(self, config: TumorConfig, **kwargs: Any) -> None:
        self.tumor = config
        super().__init__(**kwargs)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        try:
            check_tag(label_tag)
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        if image_id not in self.list_images():
            raise HTTPException(404, f"series {image_id!r} is not in the PACS")
        image_path = self.get_image_uri(image_id)
        with checked_label(self.tumor, image_id, label_filename, image_path, label_info) as path:
            # The SEG's segments are named after the app's labels, whatever the segments were called in Slicer.
            values = self.tumor.label_values
            info = {**label_info, "label_info": [{"name": name, "idx": value} for name, value in values.items()]}
            label_id = super().save_label(image_id, path, label_tag, info, label_id)
        # The lists behind /info's counts and Next Sample are cached for minutes: a submit must show at once.
        for listing in (DICOMWebDatastore.list_images, DICOMWebDatastore.get_labeled_images):
            listing.cache_clear()
        return label_id
