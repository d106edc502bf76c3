"""The one preprocessing pipeline of the tumour model, shared by training, validation, inference and scoring.

Training adds random cropping and augmentation after the shared steps; validation and inference run exactly the
shared steps, so the network sees the same data in both (a test asserts it).
"""

from __future__ import annotations

from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    EnsureTyped,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    SelectItemsd,
    SpatialPadd,
    Transform,
)

from lib.config import TumorConfig
from lib.transforms.resample import ResampleToSpacingd, ResizeToGeometryd
from lib.transforms.volume_io import LoadVolumed

IMAGE = "image"
LABEL = "label"
PRED = "pred"


def normalisation(config: TumorConfig) -> Transform:
    """Intensity preset of the modality: CT window clip and scale to [0, 1]; MR per-channel non-zero z-score."""
    if config.modality == "ct":
        low, high = config.ct_window
        return ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    return NormalizeIntensityd(IMAGE, nonzero=True, channel_wise=True)


def preprocessing(config: TumorConfig, with_label: bool) -> list[Transform]:
    """Read, normalise and resample to the model's spacing (deterministic; cached during training)."""
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    modes = ["trilinear", "nearest"] if with_label else ["trilinear"]
    return [
        LoadVolumed(keys, channels=config.channels),
        normalisation(config),
        ResampleToSpacingd(keys, config.spacing, modes),
        EnsureTyped(keys, dtype="float32", track_meta=False),
    ]


def validation_transforms(config: TumorConfig) -> list[Transform]:
    """Shared preprocessing of an image and its label, keeping only the arrays."""
    return [*preprocessing(config, with_label=True), SelectItemsd([IMAGE, LABEL])]


def training_transforms(config: TumorConfig) -> list[Transform]:
    """Validation transforms plus label-balanced random patches and light augmentation."""
    keys = [IMAGE, LABEL]
    return [
        *validation_transforms(config),
        SpatialPadd(keys, spatial_size=config.patch_size),
        RandCropByPosNegLabeld(
            keys,
            label_key=LABEL,
            spatial_size=config.patch_size,
            pos=2,
            neg=1,
            num_samples=config.samples_per_case,
        ),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
        RandScaleIntensityd(IMAGE, factors=0.1, prob=0.5),
        RandShiftIntensityd(IMAGE, offsets=0.1, prob=0.5),
        EnsureTyped(keys, dtype="float32", track_meta=False),
    ]


def inference_transforms(config: TumorConfig) -> list[Transform]:
    """Shared preprocessing of an image alone (its geometry is kept for writing the result)."""
    return preprocessing(config, with_label=False)


def inference_postprocessing() -> list[Transform]:
    """Softmax, back to the original grid, then one label value per voxel (0..K)."""
    return [
        Activationsd(PRED, softmax=True),
        ResizeToGeometryd(PRED, ref=IMAGE, mode="trilinear"),
        AsDiscreted(PRED, argmax=True, dtype="uint8"),
    ]


def sliding_window(config: TumorConfig, batch_size: int = 1) -> SlidingWindowInferer:
    """Whole-volume inference in patch-sized windows, blended with Gaussian weights."""
    return SlidingWindowInferer(
        roi_size=config.patch_size, sw_batch_size=batch_size, overlap=0.25, mode="gaussian", padding_mode="constant"
    )
