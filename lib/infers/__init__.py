"""Inference tasks served by the app's trained networks."""

from lib.infers.click_network import ClickNetworkInfer
from lib.infers.errors import InteractionError, ModelNotTrainedError
from lib.infers.segmentation import SegmentationInfer

__all__ = ["ClickNetworkInfer", "InteractionError", "ModelNotTrainedError", "SegmentationInfer"]
