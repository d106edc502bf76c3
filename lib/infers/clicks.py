"""Learned clicks: the click-guided network (type ``deepedit``), served once a training run has published it."""

from __future__ import annotations

import os
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.config import CLICKS, TumorConfig
from lib.datastore.validation import image_geometry
from lib.infers.errors import InteractionError, ModelNotTrainedError
from lib.infers.segmentation import SegmentationInfer
from lib.transforms.components import KEEP_LARGEST
from lib.transforms.guidance import ClickGuidanced, check_points
from lib.transforms.pipeline import inference_transforms


def clicks_of(request: dict[str, Any], labels: tuple[str, ...]) -> tuple[str, list, list]:
    """The clicked label and its foreground and background clicks, from either request form.

    3D Slicer sends DeepEdit models ``{<label>: [[i, j, k], ...] for every label, "label": current}``, with the
    ``background`` segment's points under ``"background"``; the clicks of the other labels are background for the
    current one. DeepGrow-style clients send ``foreground`` and ``background`` lists.
    """
    label = request.get("label")
    label = label if label in labels else labels[0]
    foreground = list(request.get("foreground") or request.get(label) or [])
    background = list(request.get("background") or [])
    for other in labels:
        if other != label:
            background += list(request.get(other) or [])
    return label, foreground, background


class ClickSegmentationInfer(SegmentationInfer):
    """The clicked object from the image and the clicks (value 1 = the clicked label).

    Listed in ``/info`` only once weights exist (``<model_dir>/clicks.pt``, published by training); until then the
    zero-training clicks model serves the click panel.

    Args:
        config: the app configuration.
    """

    model = CLICKS

    def __init__(self, config: TumorConfig) -> None:
        super().__init__(
            config,
            InferType.DEEPEDIT,
            "Learned clicks: click inside the tumour, then on what it missed (tumour) or leaked into (background); "
            "trained on your labels",
        )
        self._config.pop(KEEP_LARGEST)

    def _keep_largest(self, option: str, meta: dict[str, Any]) -> list[str]:
        """Never: a separate region the annotator clicked into the object must stay in it."""
        return []

    def is_valid(self) -> bool:
        return self.get_path() is not None

    def get_path(self, validate: bool = True) -> str | None:
        path = self.tumor.published_path(CLICKS)
        return path if os.path.isfile(path) else None

    def pre_transforms(self, data: Any = None) -> list:
        return [*inference_transforms(self.tumor), ClickGuidanced(self.tumor)]

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        if self.get_path() is None:
            raise ModelNotTrainedError(
                "The learned clicks model has no trained weights yet: submit labels and press Train "
                "(meanwhile the 'clicks' model works without training)."
            )
        label, foreground, background = clicks_of(request, self.tumor.labels)
        size = image_geometry(request["image"]).size
        try:
            foreground = check_points(foreground, size, "foreground")
            background = check_points(background, size, "background")
        except ValueError as e:
            raise InteractionError(str(e)) from e
        if not foreground:
            raise InteractionError(f"no foreground click for '{label}': click inside the object first")
        path, result = super().__call__({**request, "foreground": foreground, "background": background}, callbacks)
        return path, {**result, "label_names": {label: 1}}
