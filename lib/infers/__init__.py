"""Inference tasks served by the app."""

from lib.infers.segmentation import ModelNotTrainedError, SegmentationInfer

__all__ = ["ModelNotTrainedError", "SegmentationInfer"]
