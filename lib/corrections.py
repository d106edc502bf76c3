"""How much annotators change the pre-segmentations they are served, per model version.

When auto segmentation serves an image of the datastore, the result is kept (``<model_dir>/served/``) with the
version of the weights that made it (their training run id, or the starting checkpoint's file name). When an
annotator then submits that image's ``final`` label, the server compares the two: Dice between the served
pre-segmentation and the submitted label (mean over the labels present in either), and the number of voxels whose
value changed. ``/info`` shows, per model version, how many submissions were compared and the mean of each, so a
team sees whether retraining reduces their corrections. Recording never fails a request: a problem is logged.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import threading
from typing import Any

import numpy as np

from lib.atomic import write_json
from lib.evaluation.metrics import label_metrics
from lib.transforms.formats import volume_suffix_of
from lib.transforms.volume_io import read_volume

logger = logging.getLogger(__name__)

SERVED_FOLDER = "served"
LOG_FILE = "corrections.json"


class CorrectionLog:
    """The served pre-segmentations and the comparisons with what annotators submitted.

    Args:
        model_dir: the app's model folder.
        labels: the label names (value ``i + 1`` is ``labels[i]``).
    """

    def __init__(self, model_dir: str, labels: tuple[str, ...]) -> None:
        self.folder = os.path.join(model_dir, SERVED_FOLDER)
        self.log_path = os.path.join(model_dir, LOG_FILE)
        self.labels = labels
        self._lock = threading.Lock()
        self._summary: tuple[int, dict[str, dict[str, float | int]]] | None = None  # (log mtime, summary)

    def _meta_path(self, image_id: str) -> str:
        return os.path.join(self.folder, f"{image_id}.json")

    def served(self, image_id: str, result_path: str, version: str) -> None:
        """Keep the pre-segmentation ``result_path`` served for ``image_id`` by weights ``version``."""
        suffix = volume_suffix_of(result_path)
        if suffix is None:
            return
        try:
            with self._lock:
                os.makedirs(self.folder, exist_ok=True)
                kept = os.path.join(self.folder, f"{image_id}{suffix}")
                shutil.copyfile(result_path, kept)
                served = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                write_json(
                    self._meta_path(image_id), {"file": os.path.basename(kept), "version": version, "served": served}
                )
        except OSError as e:
            logger.warning("Could not keep the pre-segmentation served for %s: %s", image_id, e)

    def submitted(self, image_id: str, label_path: str) -> dict[str, Any] | None:
        """Compare the submitted final label of ``image_id`` with the pre-segmentation last served for it, record
        the comparison and return it; None when nothing was served for it since its last submission."""
        try:
            with self._lock:
                if not os.path.isfile(self._meta_path(image_id)):
                    return None
                with open(self._meta_path(image_id)) as f:
                    meta = json.load(f)
                served_path = os.path.join(self.folder, meta["file"])
                record = {"image": image_id, "version": meta["version"], **self._compare(served_path, label_path)}
                log = self._read_log()
                log.append(record)
                write_json(self.log_path, {"records": log})
                os.remove(served_path)
                os.remove(self._meta_path(image_id))
                return record
        except (OSError, ValueError, KeyError) as e:
            logger.warning("Could not compare the submitted label of %s with its pre-segmentation: %s", image_id, e)
            return None

    def _compare(self, served_path: str, label_path: str) -> dict[str, Any]:
        served, geometry = read_volume(served_path)
        label, label_geometry = read_volume(label_path)
        mismatch = geometry.mismatch(label_geometry)
        if mismatch:
            raise ValueError(f"the submitted label is not on the served result's grid: {mismatch}")
        served, label = np.rint(served[0]).astype(np.int64), np.rint(label[0]).astype(np.int64)
        present = [v for v in range(1, len(self.labels) + 1) if (served == v).any() or (label == v).any()]
        dice = [label_metrics(label == v, served == v, geometry.spacing).dice for v in present]
        return {
            "dice": float(np.mean(dice)) if dice else 1.0,
            "voxels_changed": int((served != label).sum()),
            "submitted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def _read_log(self) -> list[dict[str, Any]]:
        if not os.path.isfile(self.log_path):
            return []
        with open(self.log_path) as f:
            return list(json.load(f)["records"])

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Per model version: submissions compared, mean Dice with the pre-segmentation, mean voxels changed.

        ``/info`` is polled every few seconds: the log is re-read only when it has changed.
        """
        try:
            stamp = os.stat(self.log_path).st_mtime_ns if os.path.isfile(self.log_path) else 0
            if self._summary is not None and self._summary[0] == stamp:
                return self._summary[1]
            records = self._read_log()
        except (OSError, ValueError, KeyError) as e:
            logger.warning("Could not read %s: %s", self.log_path, e)
            return {}
        versions: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            versions.setdefault(record["version"], []).append(record)
        summary = {
            version: {
                "labels": len(mine),
                "mean_dice": float(np.mean([r["dice"] for r in mine])),
                "mean_voxels_changed": float(np.mean([r["voxels_changed"] for r in mine])),
            }
            for version, mine in versions.items()
        }
        self._summary = (stamp, summary)
        return summary
