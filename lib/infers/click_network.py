"""Learned clicks: the click network (type ``deepedit``), served once a training run has published it."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.config import AppConfig
from lib.datastore.validation import image_geometry
from lib.infers.errors import InteractionError
from lib.infers.served_network import ServedNetworkInfer
from lib.networks.descriptions import CLICK_NETWORK
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


class ClickNetworkInfer(ServedNetworkInfer):
    """The clicked object from the image and the clicks (value 1 = the clicked label).

    Listed in ``/info`` only once the click network's weights exist (published by a training run); until then the
    training-free click tool (``scribbles``) serves the click panel. A separate region clicked into the object stays
    in it (no largest-component post-processing).

    Args:
        app_config: the app configuration.
    """

    def __init__(self, app_config: AppConfig) -> None:
        super().__init__(
            app_config,
            CLICK_NETWORK,
            InferType.DEEPEDIT,
            "Learned clicks: click inside the tumour, then on what it missed (tumour) or leaked into (background); "
            "trained on your labels",
            {},
            "The learned clicks model has no trained weights yet: submit labels and press Train "
            "(meanwhile the 'clicks' model works without training).",
        )

    def is_valid(self) -> bool:
        return self.get_path() is not None

    def pre_transforms(self, data: Any = None) -> list:
        return [*inference_transforms(self.app_config), ClickGuidanced(self.app_config)]

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        label, foreground, background = clicks_of(request, self.app_config.plan.labels)
        if self.get_path() is not None:  # else the parent answers that there are no weights yet
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
