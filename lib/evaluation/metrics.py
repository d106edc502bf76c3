"""Agreement of a predicted label with the reference, per label, in physical units (MONAI's metrics).

Voxel overlap: Dice, precision, recall (sensitivity). Volumes in ml. Surface: the 95th percentile Hausdorff
distance in mm and the surface Dice at a tolerance in mm (Nikolov et al. 2021), both computed by MONAI with the
image's spacing. Lesions: connected components (26-connectivity) of the reference and the prediction; a reference
lesion is detected (TP) when a predicted component overlaps it by at least one voxel, a predicted component that
overlaps no reference lesion is a false positive (FP), an undetected reference lesion a false negative (FN).

Empty masks (documented in the README's evaluation section):

| reference | prediction | dice | precision | recall | hd95_mm | surface_dice | lesion precision / recall / F1 |
|---|---|---|---|---|---|---|---|
| empty | empty | 1 | 1 | 1 | 0 | 1 | 1 / 1 / 1 |
| empty | not empty | 0 | 0 | undefined | undefined | 0 | 0 / undefined / 0 |
| not empty | empty | 0 | undefined | 0 | undefined | 0 | undefined / 0 / 0 |

"Undefined" is NaN in ``metrics.csv`` and left out of means and medians (the count of defined values is reported):
a recall without any reference voxel, or a distance to a surface that does not exist, has no value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

NAN = float("nan")
CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connectivity: lesions touching at a corner are one

SURFACE_TOLERANCE_MM = 2.0  # surface Dice tolerance unless one is given (tumor-evaluate's --tolerance-mm default)


@dataclass(frozen=True)
class LabelMetrics:
    """The metrics of one label in one case (see the module docstring for empty masks)."""

    dice: float
    precision: float
    recall: float
    hd95_mm: float
    surface_dice: float
    lesion_tp: int
    lesion_fp: int
    lesion_fn: int
    lesion_precision: float
    lesion_recall: float
    lesion_f1: float
    volume_ml_true: float
    volume_ml_pred: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else NAN


def _onehot(mask: np.ndarray) -> torch.Tensor:
    """``(1, 2, *shape)``: background and foreground, as MONAI's metrics take them."""
    foreground = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)
    return torch.stack([1 - foreground, foreground])[None]


def surface_metrics(truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> tuple:
    """95th percentile Hausdorff distance (mm) and surface Dice at ``tolerance_mm``, both masks non-empty."""
    y_pred, y = _onehot(pred), _onehot(truth)
    spacing = [float(s) for s in spacing]
    hd95 = compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)
    nsd = compute_surface_dice(y_pred, y, [float(tolerance_mm)], spacing=spacing)
    return float(hd95.flatten()[0]), float(nsd.flatten()[0])


def lesion_counts(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """Detected reference lesions (TP), predicted components that touch no reference lesion (FP), and missed
    reference lesions (FN)."""
    truth_components, n_truth = ndimage.label(truth, structure=CONNECTIVITY)
    pred_components, n_pred = ndimage.label(pred, structure=CONNECTIVITY)
    detected = np.unique(truth_components[pred & truth])
    matched = np.unique(pred_components[pred & truth])
    tp = int((detected > 0).sum())
    fp = n_pred - int((matched > 0).sum())
    return tp, fp, n_truth - tp


def label_metrics(
    truth: np.ndarray, pred: np.ndarray, spacing: Sequence[float], tolerance_mm: float = SURFACE_TOLERANCE_MM
) -> LabelMetrics:
    """All metrics of one label: ``truth`` and ``pred`` are boolean masks on the same grid of ``spacing`` (mm)."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    if truth.shape != pred.shape:
        raise ValueError(f"prediction {pred.shape} and reference {truth.shape} are not on the same grid")
    voxel_ml = math.prod(float(s) for s in spacing) / 1000.0
    n_truth, n_pred = int(truth.sum()), int(pred.sum())
    overlap = int((truth & pred).sum())
    tp, fp, fn = lesion_counts(truth, pred)
    if n_truth == 0 and n_pred == 0:
        dice = precision = recall = surface_dice = 1.0
        hd95 = 0.0
        lesion_precision = lesion_recall = lesion_f1 = 1.0
    else:
        dice = 2 * overlap / (n_truth + n_pred)
        precision, recall = _ratio(overlap, n_pred), _ratio(overlap, n_truth)
        if n_truth and n_pred:
            hd95, surface_dice = surface_metrics(truth, pred, spacing, tolerance_mm)
        else:
            hd95, surface_dice = NAN, 0.0
        lesion_precision, lesion_recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        lesion_f1 = 2 * tp / (2 * tp + fp + fn)
    return LabelMetrics(
        dice=dice,
        precision=precision,
        recall=recall,
        hd95_mm=hd95,
        surface_dice=surface_dice,
        lesion_tp=tp,
        lesion_fp=fp,
        lesion_fn=fn,
        lesion_precision=lesion_precision,
        lesion_recall=lesion_recall,
        lesion_f1=lesion_f1,
        volume_ml_true=n_truth * voxel_ml,
        volume_ml_pred=n_pred * voxel_ml,
    )
