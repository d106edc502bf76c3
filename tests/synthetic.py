"""Deterministic synthetic tumour volumes with awkward geometry, for tests.

Each case is a noisy soft-tissue block with a brighter ellipsoidal "tumour"; spacing is anisotropic and the
direction is an oblique rotation, so any code that confuses axes or drops the direction fails the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class SyntheticCase:
    """Paths and arrays of one written case (arrays in (I, J, K) order)."""

    image_path: str
    label_path: str
    image: np.ndarray
    label: np.ndarray


def oblique_direction(degrees: float = 20.0) -> tuple[float, ...]:
    """A rotation about i then k: a non-identity, non-axis-aligned direction matrix (row-major)."""
    a = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return tuple((rz @ rx).ravel().tolist())


def tumour_volume(
    seed: int, size: tuple[int, int, int] = (48, 40, 20), channels: int = 1, modality: str = "ct"
) -> tuple[np.ndarray, np.ndarray]:
    """A (C, I, J, K) image and an (I, J, K) label with one ellipsoidal tumour placed by ``seed``."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).astype(np.float32)
    centre = np.array([rng.uniform(0.35, 0.65) * n for n in size])
    radii = np.array([rng.uniform(0.15, 0.25) * n for n in size])
    label = (((grid - centre) / radii) ** 2).sum(-1) <= 1.0
    base, contrast = (40.0, 80.0) if modality == "ct" else (300.0, 250.0)
    image = np.empty((channels, *size), dtype=np.float32)
    for c in range(channels):
        noise = rng.normal(0.0, 10.0, size).astype(np.float32)
        image[c] = base + (c * 20.0) + contrast * label + noise
    return image, label.astype(np.uint8)


def write_case(
    folder: str,
    name: str,
    seed: int,
    size: tuple[int, int, int] = (48, 40, 20),
    spacing: tuple[float, float, float] = (0.8, 1.1, 3.3),
    direction: tuple[float, ...] | None = None,
    channels: int = 1,
    modality: str = "ct",
    label_folder: str | None = None,
) -> SyntheticCase:
    """Write ``<folder>/<name>.nii.gz`` (and its label) on an anisotropic, oblique grid.

    Multi-channel images are written as 3D vector images (one component per channel).
    """
    image, label = tumour_volume(seed, size, channels, modality)
    direction = oblique_direction() if direction is None else direction
    origin = (-12.5, 30.25, -101.0 + seed)

    def place(img: sitk.Image) -> sitk.Image:
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        img.SetDirection(direction)
        return img

    if channels == 1:
        sitk_image = sitk.GetImageFromArray(np.transpose(image[0], (2, 1, 0)))
    else:
        sitk_image = sitk.GetImageFromArray(np.transpose(image, (3, 2, 1, 0)), isVector=True)
    os.makedirs(folder, exist_ok=True)
    image_path = os.path.join(folder, f"{name}.nii.gz")
    sitk.WriteImage(place(sitk_image), image_path)
    label_folder = label_folder or folder
    os.makedirs(label_folder, exist_ok=True)
    label_path = os.path.join(label_folder, f"{name}{'' if label_folder != folder else '_label'}.nii.gz")
    sitk.WriteImage(place(sitk.GetImageFromArray(np.transpose(label, (2, 1, 0)))), label_path)
    return SyntheticCase(image_path, label_path, image, label)


def write_sequences(
    folder: str,
    case: str,
    seed: int,
    sequences: tuple[str, ...],
    layout: str = "-",
    coarse: tuple[str, ...] = (),
    label_folder: str | None = None,
) -> SyntheticCase:
    """Write a multi-sequence MR case as one file per sequence, named as :mod:`lib.transforms.sequences` reads.

    Args:
        layout: ``"-"`` or ``"_"`` for flat files ``<case><layout><seq>.nii.gz``, ``"/"`` for ``<case>/<seq>.nii.gz``.
        coarse: sequences written on a coarser grid (twice the spacing in-plane), as scanners often do.
        label_folder: where to write the label (``<case>.nii.gz``); beside the case when None.

    Returns:
        The case with ``image_path`` the first sequence and ``image`` the channels on the first sequence's grid.
    """
    stacked = write_case(
        os.path.join(folder, ".stacked"),
        case,
        seed,
        channels=len(sequences),
        modality="mr",
        label_folder=label_folder or os.path.join(folder, ".labels"),
    )
    reference = sitk.ReadImage(stacked.image_path)
    paths = []
    for index, sequence in enumerate(sequences):
        channel = sitk.VectorIndexSelectionCast(reference, index)
        if sequence in coarse:
            spacing = (channel.GetSpacing()[0] * 2, channel.GetSpacing()[1] * 2, channel.GetSpacing()[2])
            size = (channel.GetSize()[0] // 2, channel.GetSize()[1] // 2, channel.GetSize()[2])
            channel = sitk.Resample(
                channel,
                size,
                sitk.Transform(),
                sitk.sitkLinear,
                channel.GetOrigin(),
                spacing,
                channel.GetDirection(),
                0.0,
                channel.GetPixelID(),
            )
        path = os.path.join(folder, f"{case}{layout}{sequence}.nii.gz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sitk.WriteImage(channel, path)
        paths.append(path)
    return SyntheticCase(paths[0], stacked.label_path, stacked.image, stacked.label)
