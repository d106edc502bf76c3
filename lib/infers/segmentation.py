"""Auto segmentation of every configured label (values 1..K in label order)."""

from __future__ import annotations

from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.config import AppConfig
from lib.infers.served_network import ServedNetworkInfer, option
from lib.networks.descriptions import SEGMENTATION
from lib.transforms.components import KEEP_LARGEST
from lib.transforms.pipeline import sliding_window

# Keep only the largest connected component of each label: as validation decided when the served weights were
# trained ("auto"), for every label ("on"), or never ("off"). The first is the default (3D Slicer sends the first).
KEEP_LARGEST_CHOICES = ("auto", "on", "off")


class SegmentationInfer(ServedNetworkInfer):
    """Auto segmentation with the segmentation network.

    With ``tta mirror`` it averages the segmentations of the image and its in-plane mirrors (four forward passes);
    validation and scoring run without (a training run's choice of epoch costs what it did). Keeps only the
    largest connected component of the labels for which validation chose it when the served weights
    were trained (nnU-Net's post-processing; the ``keep_largest`` option can force it on or off for a request).
    Always listed, so annotators see the model; until weights exist, requests get a clear 409.

    Args:
        app_config: the app configuration.
    """

    def __init__(self, app_config: AppConfig) -> None:
        plan = app_config.plan
        ensemble = f"; ensemble of {plan.ensemble} networks" if plan.ensemble > 1 else ""
        super().__init__(
            app_config,
            SEGMENTATION,
            InferType.SEGMENTATION,
            f"Tumour auto segmentation ({plan.modality.upper()}, {', '.join(plan.labels)}{ensemble})",
            {KEEP_LARGEST: list(KEEP_LARGEST_CHOICES)},
            "The segmentation model has no trained weights yet. Submit at least one corrected label and press "
            "Train (or start the server with --conf checkpoint <file> to load a starting model).",
        )

    def is_valid(self) -> bool:
        return True

    def inferer(self, data: Any = None):
        return sliding_window(self.app_config, mirror=self.app_config.tta == "mirror")

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        keep_largest = option(request, KEEP_LARGEST, KEEP_LARGEST_CHOICES)
        return super().__call__({**request, KEEP_LARGEST: keep_largest}, callbacks)

    def keep_largest(self, data: dict[str, Any], meta: dict[str, Any]) -> list[str]:
        """The request's ``keep_largest``: every label (on), none (off), or those validation chose (auto)."""
        labels = self.app_config.plan.labels
        if data[KEEP_LARGEST] == "on":
            return list(labels)
        if data[KEEP_LARGEST] == "off":
            return []
        return [name for name in meta.get(KEEP_LARGEST, []) if name in labels]
