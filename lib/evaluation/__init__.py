"""Evaluation of segmentations against reference labels (``tumor-evaluate``)."""
