"""The one preprocessing pipeline of the tumour model, shared by training, validation, inference and scoring.

Training adds random cropping and augmentation after the shared steps; validation and inference run exactly the
shared steps, so the network sees the same data in both (a test asserts it).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, sliding_window_inference
from monai.transforms import (
    Activationsd,
    EnsureTyped,
    MapTransform,
    NormalizeIntensityd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    SelectItemsd,
    SpatialPadd,
    Transform,
)

from lib.config import AppConfig
from lib.networks.ensemble import ensemble_members
from lib.networks.precision import MixedPrecision, autocast_dtype
from lib.transforms.components import KEEP_LARGEST_VALUES, outside_largest
from lib.transforms.resample import ResampleToSpacingd, resize
from lib.transforms.volume_io import LoadVolumed

IMAGE = "image"
LABEL = "label"
PRED = "pred"


def normalisation(app_config: AppConfig) -> Transform:
    """Intensity preset of the modality: CT window clip and scale to [0, 1]; MR per-channel non-zero z-score."""
    if app_config.plan.modality == "ct":
        low, high = app_config.plan.ct_window
        return ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    return NormalizeIntensityd(IMAGE, nonzero=True, channel_wise=True)


def preprocessing(app_config: AppConfig, with_label: bool) -> list[Transform]:
    """Read, resample to the model's spacing, normalise (deterministic; cached during training).

    Resampling comes first, as in MONAI's radiology app, so normalisation runs on the (usually far fewer) voxels of
    the model grid.
    """
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    modes = ["trilinear", "nearest"] if with_label else ["trilinear"]
    return [
        LoadVolumed(keys, channels=app_config.plan.channels, sequences=app_config.sequences),
        ResampleToSpacingd(keys, app_config.plan.spacing, modes),
        normalisation(app_config),
        EnsureTyped(keys, dtype="float32", track_meta=False),
    ]


def validation_transforms(app_config: AppConfig) -> list[Transform]:
    """Shared preprocessing of an image and its label, keeping only the arrays."""
    return [*preprocessing(app_config, with_label=True), SelectItemsd([IMAGE, LABEL])]


def spatial_augmentation(app_config: AppConfig) -> list[Transform]:
    """With ``augmentation spatial``: nnU-Net's rotation and scaling, on a fifth of the patches.

    Rotation up to 30 degrees about the slice axis (k) only: the in-plane axes share one spacing, the slice axis
    is several times coarser; scaling by 0.85-1.15. Image linear, label nearest; outside the patch is zero.
    """
    if app_config.augmentation != "spatial":
        return []
    return [
        RandAffined(
            [IMAGE, LABEL],
            prob=0.2,
            rotate_range=(0.0, 0.0, math.pi / 6),
            scale_range=(0.15, 0.15, 0.15),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    ]


def training_transforms(app_config: AppConfig, foreground_share: float | None = None) -> list[Transform]:
    """Validation transforms plus random patches, ``foreground_share`` of them (by default the configuration's)
    centred on a labelled voxel and the rest on an unlabelled one, and light augmentation."""
    share = app_config.foreground_share if foreground_share is None else foreground_share
    keys = [IMAGE, LABEL]
    return [
        *validation_transforms(app_config),
        SpatialPadd(keys, spatial_size=app_config.patch_size),
        RandCropByPosNegLabeld(
            keys,
            label_key=LABEL,
            spatial_size=app_config.patch_size,
            pos=share,
            neg=1.0 - share,
            num_samples=app_config.samples_per_case,
        ),
        *spatial_augmentation(app_config),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
        RandScaleIntensityd(IMAGE, factors=0.1, prob=0.5),
        RandShiftIntensityd(IMAGE, offsets=0.1, prob=0.5),
        EnsureTyped(keys, dtype="float32", track_meta=False),
    ]


def inference_transforms(app_config: AppConfig) -> list[Transform]:
    """Shared preprocessing of an image alone (its geometry is kept for writing the result)."""
    return preprocessing(app_config, with_label=False)


def argmax_channels(probabilities: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Index of the largest channel at each voxel of a ``(C, ...)`` tensor (or C tensors), as ``(1, ...)`` uint8.

    Same result as ``torch.argmax(dim=0)`` (the first channel wins ties), as a running maximum over the channels:
    on CPU ``torch.argmax`` over the leading dimension of a volume is about 100 times slower.
    """
    best = probabilities[0].clone()
    label = torch.zeros(best.shape, dtype=torch.uint8, device=best.device)
    for channel in range(1, len(probabilities)):
        label[probabilities[channel] > best] = channel
        torch.maximum(best, probabilities[channel], out=best)
    return label[None]


class LabelOnGeometryd(MapTransform):
    """Class probabilities ``(K + 1, ...)`` on the model grid -> label values ``(1, ...)`` 0..K on the grid stored
    under ``f"{ref}_geometry"``: trilinear resizing of the probabilities, then the most likely class.

    Only the K label channels are resized. Interpolation is linear, so the background's interpolated probability
    is 1 minus theirs: the same labels (up to float rounding at exact ties) for a (K + 1)-th less of the costliest
    step after the network.
    """

    def __init__(self, keys: Sequence[Hashable], ref: str = IMAGE) -> None:
        super().__init__(keys)
        self.ref = ref

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        size = d[f"{self.ref}_geometry"].size
        for key in self.key_iterator(d):
            labels = resize(torch.as_tensor(d[key])[1:], size, "trilinear")
            d[key] = argmax_channels([1 - labels.sum(0), *labels])
        return d


class KeepLargestComponentd(MapTransform):
    """Class probabilities ``(K + 1, ...)``: voxels whose most likely class is one of the label values listed under
    ``d[values_key]`` but that lie outside that class's largest component become certain background.

    nnU-Net's post-processing (see :mod:`lib.transforms.components`), on the argmax of the grid of the
    probabilities (the model grid), as in validation. Nothing changes when no values are listed.
    """

    def __init__(self, keys: Sequence[Hashable], values_key: str = KEEP_LARGEST_VALUES) -> None:
        super().__init__(keys)
        self.values_key = values_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        values = list(d.get(self.values_key) or [])
        if not values:
            return d
        for key in self.key_iterator(d):
            probabilities = torch.as_tensor(d[key]).clone()
            label = argmax_channels(probabilities)[0]
            for value in values:
                removed = outside_largest(label == value)
                probabilities[:, removed] = 0
                probabilities[0, removed] = 1
            d[key] = probabilities
        return d


def inference_postprocessing() -> list[Transform]:
    """Softmax, the largest component of the label values listed under ``keep_largest_values``, then one label
    value per voxel (0..K) on the original grid."""
    return [Activationsd(PRED, softmax=True), KeepLargestComponentd(PRED), LabelOnGeometryd(PRED, ref=IMAGE)]


def window_size(app_config: AppConfig, shape: Sequence[int]) -> tuple[int, int, int]:
    """Sliding-window size for an image of ``shape`` voxels on the model grid.

    The whole image in one window (each side rounded up to the network's size factor) when that holds at most
    ``app_config.window_voxels``; otherwise the longest side is halved until it fits. Never smaller than the training
    patch. One large window does the work of many overlapping patches: the network runs on each voxel once.
    """
    factor = app_config.plan.size_divisor
    window = [max(p, math.ceil(n / factor) * factor) for p, n in zip(app_config.patch_size, shape)]
    while math.prod(window) > app_config.window_voxels:
        axis = max(range(3), key=lambda a: window[a] / app_config.patch_size[a])
        if window[axis] <= app_config.patch_size[axis]:
            break
        window[axis] = max(app_config.patch_size[axis], math.ceil(window[axis] / 2 / factor) * factor)
    return tuple(window)  # type: ignore[return-value]


class SlidingWindow(Inferer):
    """Whole-volume inference in windows sized by :func:`window_size`, blended with Gaussian weights in float32;
    each window's forward pass in the configured mixed precision (:mod:`lib.networks.precision`).

    Used by inference, validation and scoring alike, so the validation Dice is the served model's. With
    ``mirror``, the image is also segmented flipped along i, along j and along both (nnU-Net's mirror test-time
    augmentation in the slice plane, where training flips too), and the four softmax outputs are averaged; the
    result is returned as log-probabilities, whose softmax is that average. An ensemble
    (:class:`lib.networks.ensemble.Ensemble`) has each member segment the whole volume and their softmax outputs
    averaged the same way (nnU-Net's ensembling).
    """

    def __init__(self, app_config: AppConfig, batch_size: int = 1, mirror: bool = False) -> None:
        super().__init__()
        self.app_config = app_config
        self.batch_size = batch_size
        self.mirror = mirror

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        members = ensemble_members(network)
        flips: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3)) if self.mirror else ((),)
        if len(members) == 1 and len(flips) == 1:
            return self._windows(inputs, members[0], **kwargs)
        probabilities = None
        for member in members:
            for axes in flips:
                flipped = torch.flip(inputs, axes) if axes else inputs
                logits = self._windows(flipped, member, **kwargs)
                p = torch.softmax(torch.flip(logits, axes) if axes else logits, dim=1)
                probabilities = p if probabilities is None else probabilities + p
        return torch.log(probabilities / (len(members) * len(flips)) + 1e-12)

    def _windows(self, inputs: torch.Tensor, network: Any, **kwargs: Any) -> torch.Tensor:
        return sliding_window_inference(
            inputs,
            window_size(self.app_config, inputs.shape[2:]),
            self.batch_size,
            MixedPrecision(network, autocast_dtype(self.app_config.amp, inputs.device)),
            overlap=0.25,
            mode="gaussian",
            padding_mode="constant",
            **kwargs,
        )


def sliding_window(app_config: AppConfig, batch_size: int = 1, mirror: bool = False) -> SlidingWindow:
    """The app's whole-volume inferer (see :class:`SlidingWindow`)."""
    return SlidingWindow(app_config, batch_size, mirror)
