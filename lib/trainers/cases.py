"""The cases of a training run: which labelled cases can be used, and the stable train/validation split."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from monailabel.interfaces.datastore import Datastore

from lib.config import AppConfig
from lib.datastore.validation import InvalidUploadError, check_image, check_label
from lib.transforms.sequences import case_name

logger = logging.getLogger(__name__)

Case = dict[str, str]  # {"image": path, "label": path}


def case_id(case: Case, sequences: Sequence[str] = ()) -> str:
    """A labelled case's name (in the split, the logs and a checkpoint's record of its cases): its image file
    name, with its folder's for a case stored as one folder of sequences (``patient7/t2f.nii.gz``), whose files
    share their names with every other such case's."""
    return case_name(case["image"], sequences)


def usable_cases(datastore: Datastore, app_config: AppConfig) -> list[Case]:
    """Every labelled case that can be trained on, in name order; the others are skipped with the reason logged.

    Raises:
        ValueError: when no case is usable (the message gives the first reasons).
    """
    usable, skipped = checked_cases(datastore, app_config)
    if not usable:
        reasons = f" ({'; '.join(skipped[:3])})" if skipped else ""
        raise ValueError(f"no usable labelled images: submit at least one label before training{reasons}")
    logger.info("Training on %d labelled case(s)", len(usable))
    return usable


def checked_cases(datastore: Datastore, app_config: AppConfig) -> tuple[list[Case], list[str]]:
    """The datastore's labelled cases that can be trained on, in name order, and why each other one cannot."""
    usable, skipped = [], []
    for item in sorted(datastore.datalist(), key=lambda d: d["image"]):
        try:
            check_image(item["image"], app_config.plan.channels, app_config.max_voxels, app_config.sequences)
            check_label(item["label"], item["image"], len(app_config.plan.labels), app_config.max_voxels)
        except InvalidUploadError as e:
            name = case_id(item, app_config.sequences)
            logger.warning("Skipping %s from training: %s", name, e)
            skipped.append(f"{name}: {e}")
            continue
        usable.append({"image": item["image"], "label": item["label"]})
    return usable, skipped


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def split_cases(
    cases: Sequence[Case], val_split: float, sequences: Sequence[str] = ()
) -> tuple[list[Case], list[Case]]:
    """``val_split`` of the cases (at least one, never all) validate: those whose names hash lowest.

    The hash makes the split stable as annotators add labels: a new case joins validation only by displacing
    a validation case into training, and a training case moves to validation only when the validation share
    grows by one case. So successive runs validate mostly on cases the served weights never trained on.

    Returns:
        The training and the validation cases, each in the given order.
    """
    n_val = round(len(cases) * val_split)
    n_val = min(max(n_val, 1 if val_split > 0 else 0), len(cases) - 1)
    names = [case_id(d, sequences) for d in cases]
    val_ids = set(sorted(names, key=_hash)[:n_val])
    train = [d for d, name in zip(cases, names) if name not in val_ids]
    val = [d for d, name in zip(cases, names) if name in val_ids]
    logger.info("Cases: %d for training, %d for validation (%s)", len(train), len(val), ", ".join(sorted(val_ids)))
    return train, val
