"""Errors of inference requests that the app answers with a 4xx and the reason."""


class ModelNotTrainedError(RuntimeError):
    """No trained weights exist yet, so there is nothing honest to serve."""


class InteractionError(ValueError):
    """The request cannot be answered as sent (missing marks, wrong grid, points outside the image)."""
