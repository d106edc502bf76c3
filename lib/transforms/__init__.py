"""Transforms of the tumour app: volume I/O, resampling and the shared preprocessing pipeline."""
