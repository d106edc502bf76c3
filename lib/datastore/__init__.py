"""Datastore of the tumour app: the stock local datastore plus checks on what annotators upload."""

from lib.datastore.tumor_datastore import VOLUME_EXTENSIONS, TumorDatastore
from lib.datastore.validation import InvalidUploadError, check_image, check_label, remap_label

__all__ = ["VOLUME_EXTENSIONS", "InvalidUploadError", "TumorDatastore", "check_image", "check_label", "remap_label"]
