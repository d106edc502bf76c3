"""The model's plan: what a checkpoint records and inference must reproduce (nnU-Net's "plans").

Training writes the plan into every checkpoint it publishes (``meta["architecture"]``) and inference, scoring and
the next training run refuse a checkpoint whose plan differs, so weights are never applied to images preprocessed
differently from those they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("ct", "mr")
# Network architectures and the factor every patch or window dimension must divide by.
ARCHITECTURES = {"segresnet": 8, "unet": 16}


@dataclass(frozen=True)
class ModelPlan:
    """Labels, input channels, preprocessing and architecture of the app's networks.

    Attributes:
        labels: label names; the segmentation network outputs value ``i + 1`` for ``labels[i]`` (0 is background).
        channels: number of image channels (sequences) the networks take.
        modality: ``"ct"`` (clip to ``ct_window`` in HU, scale to [0, 1]) or ``"mr"`` (per-channel z-score over
            non-zero voxels).
        ct_window: lower and upper HU bound used by the ``ct`` preset.
        spacing: target voxel spacing in mm along the image's i, j, k axes.
        network: ``"segresnet"`` (default) or ``"unet"``.
        features: feature maps of the first network level (network width).
        ensemble: how many copies of the segmentation network are trained apart and served together, their
            softmax outputs averaged (:mod:`lib.networks.ensemble`); 1 is a single network. Recorded in the
            segmentation network's checkpoints when above 1.
    """

    labels: tuple[str, ...] = ("tumor",)
    channels: int = 1
    modality: str = "ct"
    ct_window: tuple[float, float] = (-200.0, 400.0)
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0)
    network: str = "segresnet"
    features: int = 8
    ensemble: int = 1

    @property
    def num_classes(self) -> int:
        """Segmentation network outputs: background plus one per label."""
        return len(self.labels) + 1

    @property
    def label_values(self) -> dict[str, int]:
        """Label name -> output value, 1..K in configuration order (the order 3D Slicer imports)."""
        return {name: i + 1 for i, name in enumerate(self.labels)}

    @property
    def size_divisor(self) -> int:
        """What every patch and sliding-window dimension must divide by for this architecture."""
        return ARCHITECTURES[self.network]

    def recorded(self) -> dict[str, object]:
        """The plan as a checkpoint records it (``meta["architecture"]``); a checkpoint loads only when equal."""
        recorded: dict[str, object] = {
            "network": self.network,
            "features": self.features,
            "channels": self.channels,
            "labels": list(self.labels),
            "modality": self.modality,
            "spacing": list(self.spacing),
        }
        if self.modality == "ct":
            recorded["ct_window"] = list(self.ct_window)
        return recorded
