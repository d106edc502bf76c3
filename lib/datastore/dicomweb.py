"""DICOMweb datastore (a PACS) with the folder datastore's checks on submitted labels."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import SimpleITK as sitk
from cachetools import TTLCache, cached
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom import Dataset

from lib.config import TumorConfig
from lib.datastore.names import InvalidNameError, check_tag
from lib.datastore.rtstruct import referenced_series, roi_names, rtstruct_label
from lib.datastore.tumor_datastore import checked_label
from lib.datastore.validation import image_geometry
from lib.transforms.volume_io import write_label

logger = logging.getLogger(__name__)


class TumorDicomDatastore(DICOMWebDatastore):
    """:class:`DICOMWebDatastore` whose submitted labels go through :func:`checked_label` before anything is stored
    as DICOM SEG, whose counts include a submit at once, and which takes expert RTSTRUCT outlines in the PACS as
    ``final`` labels when a ROI's name is a label's (or maps to one: ``--conf outline_names``).

    A series' own SEG (a submitted label) wins over its RTSTRUCT. RTSTRUCT labels are converted into the local
    cache when a training run asks for the labelled cases (MONAI Label's SEG download clears the cache's other
    labels first, so they are converted again each time: a few tenths of a second per series).

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
        for listing in (
            DICOMWebDatastore.list_images,
            DICOMWebDatastore.get_labeled_images,
            TumorDicomDatastore._outlines,
        ):
            listing.cache_clear()
        return label_id

    @cached(cache=TTLCache(maxsize=16, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
    def _outlines(self) -> dict[str, tuple[str, str]]:
        """Image series UID -> (study UID, RTSTRUCT series UID) of the expert outlines with a ROI named as a label."""
        images, wanted, found = set(self.list_images()), set(self.tumor.outline_values), {}
        for item in self._client.search_for_series(search_filters={"Modality": "RTSTRUCT"}):
            series = Dataset.from_json(item)
            study, uid = str(series.StudyInstanceUID), str(series.SeriesInstanceUID)
            meta = Dataset.from_json(self._client.retrieve_series_metadata(study, uid)[0])
            image, names = referenced_series(meta), sorted(roi_names(meta).values())
            if image in images and {n.lower() for n in names} & wanted:
                found[image] = (study, uid)
            else:
                logger.info(
                    "RTSTRUCT %s not used as a label: ROIs %s (labels and --conf outline_names: %s)",
                    uid,
                    names,
                    sorted(wanted),
                )
        return found

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return sorted(set(super().get_labeled_images(label_tag, labels)) | set(self._outlines()))

    def _download_labeled_data(self) -> None:
        super()._download_labeled_data()
        converted = set(LocalDatastore.get_labeled_images(self))  # SEGs just downloaded
        for image, (study, series) in self._outlines().items():
            if image in converted:
                continue
            image_path = self.get_image_uri(image)
            self.refresh()  # the converted series is now a local image
            rtstruct = self._client.retrieve_series(study, series)[0]
            label = rtstruct_label(rtstruct, sitk.ReadImage(image_path), self.tumor.outline_values)
            if not label.any():
                logger.warning("RTSTRUCT %s outlines nothing on series %s: not used", series, image)
                continue
            with tempfile.TemporaryDirectory() as folder:
                path = write_label(label, image_geometry(image_path), os.path.join(folder, f"{image}.nii.gz"))
                info = {"source": "RTSTRUCT", "SeriesInstanceUID": series}
                LocalDatastore.save_label(self, image, path, DefaultLabelTag.FINAL, info)
