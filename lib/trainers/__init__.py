"""Training tasks of the app."""

from lib.trainers.segmentation import SegmentationTrainer

__all__ = ["SegmentationTrainer"]
