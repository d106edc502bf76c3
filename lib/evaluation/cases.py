"""Pair reference and predicted label files by case name, and compute every case's metrics."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from lib.datastore.validation import InvalidUploadError, check_file, whole_values
from lib.evaluation.metrics import label_metrics
from lib.transforms.formats import VOLUME_SUFFIXES, volume_suffix_of
from lib.transforms.geometry import Geometry
from lib.transforms.volume_io import read_volume


def case_name(path: str) -> str | None:
    """A volume file's case name (its name without the volume suffix), or None for other files."""
    name = os.path.basename(path)
    suffix = volume_suffix_of(name)
    return name[: -len(suffix)] if suffix else None


def volumes(folder: str) -> dict[str, str]:
    """Case name -> path of every volume file directly in ``folder``."""
    found: dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        name = case_name(entry)
        path = os.path.join(folder, entry)
        if name is not None and os.path.isfile(path):
            if name in found:
                raise ValueError(f"{folder} holds case {name} twice ({os.path.basename(found[name])}, {entry})")
            found[name] = path
    return found


def pairs(labels: str, predictions: str) -> list[tuple[str, str, str]]:
    """``(case, reference, prediction)`` for every case in both folders.

    Raises:
        ValueError: when a reference case has no prediction (a missing result must not silently raise the mean),
            or when no case is found.
    """
    references, predicted = volumes(labels), volumes(predictions)
    missing = sorted(set(references) - set(predicted))
    if missing:
        raise ValueError(f"no prediction for {len(missing)} reference case(s): {', '.join(missing[:5])}")
    if not references:
        raise ValueError(f"no label volumes ({', '.join(VOLUME_SUFFIXES)}) in {labels}")
    return [(case, references[case], predicted[case]) for case in sorted(references)]


def _label(path: str) -> tuple[np.ndarray, Geometry]:
    """A labelmap of whole, finite values from a complete file; ValueError naming the file otherwise."""
    try:
        check_file(path, max_voxels=2**40)  # complete: a truncated file reads as zeros where its data is missing
    except InvalidUploadError as e:
        raise ValueError(str(e)) from None
    array, geometry = read_volume(path)
    name = os.path.basename(path)
    if array.shape[0] != 1:
        raise ValueError(f"{name} has {array.shape[0]} channels; a label has one")
    try:
        whole_values(array)
    except ValueError as e:
        raise ValueError(f"{name} {e}") from None
    return array[0].astype(np.int64), geometry


def case_rows(
    case: str, reference: str, prediction: str, label_names: Sequence[str], tolerance_mm: float
) -> Iterator[dict[str, object]]:
    """One row of metrics per label of one case; label value ``i + 1`` is ``label_names[i]``."""
    truth, geometry = _label(reference)
    pred, pred_geometry = _label(prediction)
    mismatch = geometry.mismatch(pred_geometry)
    if mismatch:
        raise ValueError(f"case {case}: the prediction is not on the reference's grid: {mismatch}")
    named = set(range(len(label_names) + 1))
    for what, array in (("reference", truth), ("prediction", pred)):
        unknown = sorted(set(np.unique(array).tolist()) - named)
        if unknown:
            raise ValueError(f"case {case}: {what} values {unknown} have no name; give --label-names")
    for value, name in enumerate(label_names, start=1):
        metrics = label_metrics(truth == value, pred == value, geometry.spacing, tolerance_mm)
        yield {"case": case, "label": name, **metrics.as_dict()}
