"""Click guidance for the click-guided network (DeepEdit-style: image + foreground/background click channels).

Training simulates clicks from the final labels with MONAI's DeepGrow transforms (Sakinis et al., "Interactive
segmentation of medical images through fully convolutional neural networks", 2019): a first click deep inside the
object, then corrective clicks in the largest errors of the network's own prediction. Inference maps the annotator's
IJK clicks onto the model's resampled grid. Both draw the clicks as Gaussian blobs with the same transform.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.apps.deepgrow.transforms import (
    AddGuidanceSignald,
    AddInitialSeedPointd,
    AddRandomGuidanced,
    FindDiscrepancyRegionsd,
)
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    EnsureTyped,
    MapTransform,
    Randomizable,
    ToNumpyd,
    ToTensord,
    Transform,
)

from lib.config import AppConfig
from lib.transforms.geometry import Geometry
from lib.transforms.masks import deepest_point
from lib.transforms.pipeline import IMAGE, LABEL, PRED, training_transforms, validation_transforms

Point = tuple[int, int, int]

GUIDANCE = "guidance"
DISCREPANCY = "discrepancy"
PROBABILITY = "probability"
SIGMA_VOXELS = 2  # Gaussian blob of a click on the model's grid


class ClickedObjectd(Randomizable, MapTransform):
    """Replace the label by the (numpy) mask of one labelled object: a random label value present or the first.

    The click-guided network segments whichever label was clicked, so it learns every label as "the object".
    """

    def __init__(self, keys: Sequence[Hashable] = (LABEL,), random: bool = True) -> None:
        super().__init__(keys)
        self.random = random

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = np.asarray(d[key])
            values = [v for v in np.unique(label).tolist() if v > 0] or [0]  # no object: the mask stays empty
            value = values[self.R.randint(len(values))] if self.random else values[0]
            d[key] = ((label == value) & (label > 0)).astype(np.float32)
        return d


class FirstClickd(AddInitialSeedPointd):
    """DeepGrow's random first click inside the object (weighted towards its interior); none on a patch without it.

    Patches without the object teach the network that, away from the clicks, nothing is segmented.
    """

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        if np.asarray(data[self.label]).any():
            return super().__call__(data)
        none = [-1] * np.asarray(data[self.label]).ndim
        return {**data, self.guidance: json.dumps([[none], [none]])}


class DeepestClickd(Transform):
    """A first click at the object's deepest interior voxel (deterministic: for validation).

    Training draws the first click at random, weighted towards the interior (``AddInitialSeedPointd``); validation
    always clicks where an annotator would, so its Dice compares across epochs.

    Args:
        spacing: voxel size (mm) of the grid the label is on.
    """

    def __init__(self, spacing: Sequence[float]) -> None:
        self.spacing = tuple(spacing)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        label = np.asarray(d[LABEL])[0] > 0
        point = list(deepest_point(label, self.spacing))
        d[GUIDANCE] = json.dumps([[[0, *point]], [[-1] * (label.ndim + 1)]])
        return d


CLICK_FOREGROUND_SHARE = 2 / 3  # a click needs an object: most patches are centred on one


def _guidance_signal(app_config: AppConfig) -> AddGuidanceSignald:
    return AddGuidanceSignald(IMAGE, GUIDANCE, sigma=SIGMA_VOXELS, number_intensity_ch=app_config.plan.channels)


def click_training_transforms(app_config: AppConfig) -> list[Transform]:
    """The segmentation model's training patches (2 on an object : 1 elsewhere, whatever its ``foreground_share``),
    one object of each, and a first simulated click in it."""
    return [
        *training_transforms(app_config, CLICK_FOREGROUND_SHARE),
        ToNumpyd([IMAGE, LABEL]),
        ClickedObjectd(),
        FirstClickd(LABEL, GUIDANCE),
        _guidance_signal(app_config),
        EnsureTyped([IMAGE, LABEL], dtype="float32", track_meta=False),
    ]


def click_validation_transforms(app_config: AppConfig) -> list[Transform]:
    """The shared preprocessing of whole volumes, the first labelled object, and a click at its deepest point."""
    return [
        *validation_transforms(app_config),
        ToNumpyd([IMAGE, LABEL]),
        ClickedObjectd(random=False),
        DeepestClickd(app_config.plan.spacing),
        _guidance_signal(app_config),
        EnsureTyped([IMAGE, LABEL], dtype="float32", track_meta=False),
    ]


def corrective_click_transforms(app_config: AppConfig) -> list[Transform]:
    """Between simulated rounds: find where the prediction is wrong and click in the largest error (DeepGrow)."""
    return [
        Activationsd(PRED, softmax=True),
        AsDiscreted(PRED, argmax=True),
        ToNumpyd([IMAGE, LABEL, PRED]),
        FindDiscrepancyRegionsd(LABEL, PRED, DISCREPANCY),
        AddRandomGuidanced(GUIDANCE, DISCREPANCY, PROBABILITY),
        _guidance_signal(app_config),
        ToTensord([IMAGE, LABEL]),
    ]


def check_points(points: Sequence[Sequence[int]], shape: Sequence[int], name: str) -> list[Point]:
    """Validate IJK ``points`` against the image ``shape``; raise ValueError naming the first bad one."""
    checked = []
    for point in points:
        if len(point) != len(shape) or not all(isinstance(v, numbers.Integral) or float(v).is_integer() for v in point):
            raise ValueError(f"{name} point {list(point)} is not an [i, j, k] voxel index")
        ijk = tuple(int(v) for v in point)
        if not all(0 <= v < n for v, n in zip(ijk, shape)):
            raise ValueError(f"{name} point {list(point)} lies outside the image of size {list(shape)}")
        checked.append(ijk)
    return checked  # type: ignore[return-value]


def to_model_grid(points: Sequence[Sequence[int]], size: Sequence[int], shape: Sequence[int]) -> list[list[int]]:
    """IJK voxel indices on the image grid (``size``) -> indices on the resampled grid (``shape``).

    Resampling keeps the physical extent, so voxel centres map as ``(p + 0.5) * shape / size - 0.5``.
    """
    mapped = []
    for point in points:
        ijk = [int(np.clip(np.floor((p + 0.5) * m / n), 0, m - 1)) for p, n, m in zip(point, size, shape)]
        mapped.append([0, *ijk])
    return mapped


class ClickGuidanced(Transform):
    """Add the annotator's clicks (``foreground``/``background`` IJK lists on the image grid) as guidance channels.

    Runs after the shared preprocessing; the image's original grid is read from ``f"{IMAGE}_geometry"``.
    """

    def __init__(self, app_config: AppConfig) -> None:
        self.signal = _guidance_signal(app_config)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        geometry: Geometry = d[f"{IMAGE}_geometry"]  # type: ignore[assignment]
        shape = tuple(d[IMAGE].shape[1:])  # type: ignore[attr-defined]
        d[GUIDANCE] = json.dumps(
            [to_model_grid(d.get(key) or [], geometry.size, shape) for key in ("foreground", "background")]
        )
        d = self.signal(d)
        d[IMAGE] = torch.as_tensor(d[IMAGE], dtype=torch.float32)
        return d
