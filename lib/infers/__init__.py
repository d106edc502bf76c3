"""Inference tasks served by the app."""

from lib.infers.clicks import ClickSegmentationInfer
from lib.infers.errors import InteractionError, ModelNotTrainedError
from lib.infers.segmentation import SegmentationInfer

__all__ = ["ClickSegmentationInfer", "InteractionError", "ModelNotTrainedError", "SegmentationInfer"]
