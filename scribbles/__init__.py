"""Scribble- and click-based refinement that works from the first image, on CT and MR, without training."""

from scribbles.infer import ClickToolInfer, InteractionError, ScribblesInfer

__all__ = ["ClickToolInfer", "InteractionError", "ScribblesInfer"]
