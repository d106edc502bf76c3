"""DICOMweb datastore (a PACS) with the folder datastore's checks on submitted labels."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import SimpleITK as sitk
from cachetools import TTLCache, cached
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import dicom_to_nifti
from monailabel.datastore.utils.dicom import dicom_web_download_series
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom import Dataset

from lib.config import AppConfig
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

    Expert SEGs count the same way: by their segments' names, mapped to the app's values. A series' SEG (a
    submitted label) wins over its RTSTRUCT. Labels are converted into the local cache, once per source series,
    when a training run asks for the labelled cases.

    Args:
        app_config: the app configuration.
        kwargs: passed to :class:`DICOMWebDatastore`.
    """

    def __init__(self, app_config: AppConfig, **kwargs: Any) -> None:
        self.app_config = app_config
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
        with checked_label(self.app_config, image_id, label_filename, image_path, label_info) as path:
            # The SEG's segments are named after the app's labels, whatever the segments were called in Slicer.
            values = self.app_config.plan.label_values
            info = {**label_info, "label_info": [{"name": name, "idx": value} for name, value in values.items()]}
            label_id = super().save_label(image_id, path, label_tag, info, label_id)
        # The lists behind /info's counts and Next Sample are cached for minutes: a submit must show at once.
        for listing in (DICOMWebDatastore.list_images, TumorDicomDatastore._segs, TumorDicomDatastore._outlines):
            listing.cache_clear()
        return label_id

    @cached(cache=TTLCache(maxsize=16, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
    def _outlines(self) -> dict[str, tuple[str, str]]:
        """Image series UID -> (study UID, RTSTRUCT series UID) of the expert outlines with a ROI named as a label."""
        images, wanted, found = set(self.list_images()), set(self.app_config.outline_values), {}
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

    @cached(cache=TTLCache(maxsize=16, ttl=settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY))
    def _segs(self) -> dict[str, tuple[str, dict[int, int]]]:
        """Image series UID -> (SEG series UID, segment number -> label value) of the SEGs with a segment named as
        a label (or mapped to one); segments named otherwise are left out of the label."""
        images, values, found = set(self.list_images()), self.app_config.outline_values, {}
        for item in self._client.search_for_series(search_filters={"Modality": "SEG"}):
            series = Dataset.from_json(item)
            study, uid = str(series.StudyInstanceUID), str(series.SeriesInstanceUID)
            meta = Dataset.from_json(self._client.retrieve_series_metadata(study, uid)[0])
            references = meta.get("ReferencedSeriesSequence")
            image = str(references[0].SeriesInstanceUID) if references else None
            segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in getattr(meta, "SegmentSequence", [])}
            numbers = {number: values.get(name.lower(), 0) for number, name in segments.items()}
            if image in images and any(numbers.values()):
                found[image] = (uid, numbers)
            else:
                logger.info(
                    "SEG %s not used as a label: segments %s (labels and --conf outline_names: %s)",
                    uid,
                    sorted(segments.values()),
                    sorted(values),
                )
        return found

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        return sorted(set(self._segs()) | set(self._outlines()))

    def _download_labeled_data(self) -> None:
        """Bring every labelled series and its label into the local cache, the label in the app's values."""
        segs, outlines = self._segs(), self._outlines()
        for image in set(LocalDatastore.get_labeled_images(self)) - set(segs) - set(outlines):
            logger.info("The label of series %s is no longer in the PACS: removed from the cache", image)
            LocalDatastore.remove_label(self, image, DefaultLabelTag.FINAL)
        for image, (seg, numbers) in segs.items():
            if self._cached_from(image) != seg:
                self._store(image, seg, self._from_seg(image, seg, numbers))
        for image, (study, series) in outlines.items():
            if image not in segs and self._cached_from(image) != series:
                self._store(image, series, self._from_rtstruct(image, study, series))

    def _cached_from(self, image: str) -> str | None:
        """The PACS series the cached label of ``image`` was made from (None: no cached label)."""
        if image not in LocalDatastore.get_labeled_images(self):
            return None
        return LocalDatastore.get_label_info(self, image, DefaultLabelTag.FINAL).get("SeriesInstanceUID")

    def _store(self, image: str, source: str, label: np.ndarray) -> None:
        """Cache ``label``, an (I, J, K) label of ``image`` in the app's values made from ``source``, as its final
        label."""
        if not label.any():
            logger.warning("The outline %s of series %s holds no label of this app: not used", source, image)
            return
        image_path = self.get_image_uri(image)
        self.refresh()  # the converted series is now a local image
        with tempfile.TemporaryDirectory() as folder:
            path = write_label(label, image_geometry(image_path), os.path.join(folder, f"{image}.nii.gz"))
            LocalDatastore.save_label(self, image, path, DefaultLabelTag.FINAL, {"SeriesInstanceUID": source})

    def _from_seg(self, image: str, seg: str, numbers: dict[int, int]) -> np.ndarray:
        """A SEG series on ``image``'s grid, in the app's values (segment numbers mapped by name)."""
        reference = sitk.ReadImage(self.get_image_uri(image))
        with tempfile.TemporaryDirectory() as folder:
            dicom_web_download_series(None, seg, folder, self._client, self._fetch_by_frame)
            converted = dicom_to_nifti(folder, is_seg=True)  # values = segment numbers
        try:
            # A SEG may hold only the frames its segments cover: put it on the whole series' grid.
            segments = sitk.Resample(
                sitk.ReadImage(converted), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
            )
        finally:
            os.remove(converted)
        array = np.transpose(sitk.GetArrayFromImage(segments), (2, 1, 0))
        lookup = np.zeros(256, np.uint8)
        for number, value in numbers.items():
            if 0 < number < 256:
                lookup[number] = value
        return lookup[array]

    def _from_rtstruct(self, image: str, study: str, series: str) -> np.ndarray:
        """An RTSTRUCT series rasterised on ``image``'s grid, in the app's values."""
        rtstruct = self._client.retrieve_series(study, series)[0]
        return rtstruct_label(rtstruct, sitk.ReadImage(self.get_image_uri(image)), self.app_config.outline_values)
