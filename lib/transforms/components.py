"""nnU-Net's post-processing: keep only the largest connected component of a label, when validation says so.

A tumour model trained on a few cases marks scattered false positives away from the tumour. nnU-Net removes every
component of a class but the largest, and keeps that step only for the classes whose validation Dice it improves
(a dataset with several lesions per case would lose the smaller ones). The trainer validates each epoch with and
without it (:func:`keep_largest_onehot`), the published checkpoint records the labels it improved, and inference
applies it to those labels (``lib.transforms.pipeline.KeepLargestComponentd``) on the model grid, where validation
decided it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from monai.transforms.utils import get_largest_connected_component_mask

KEEP_LARGEST = "keep_largest"  # checkpoint meta and stats: names of the labels post-processed
KEEP_LARGEST_VALUES = "keep_largest_values"  # inference data: their label values


def outside_largest(mask: torch.Tensor) -> torch.Tensor:
    """Voxels of the binary ``mask`` (spatial dims only) outside its largest 26-connected component."""
    if not bool(mask.any()):
        return mask
    return mask & ~torch.as_tensor(get_largest_connected_component_mask(mask), dtype=torch.bool, device=mask.device)


def keep_largest_onehot(onehot: torch.Tensor, channels: Iterable[int]) -> torch.Tensor:
    """One-hot labels ``(C, ...)`` with each of ``channels`` reduced to its largest component; the removed voxels
    become background (channel 0), as in nnU-Net."""
    result = onehot.clone()
    for channel in channels:
        removed = outside_largest(result[channel].bool())
        result[channel][removed] = 0
        result[0][removed] = 1
    return result
