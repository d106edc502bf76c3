"""Epistemic uncertainty of unlabelled images by Monte-Carlo dropout (Gal & Ghahramani, ICML 2016).

The score is the mutual information between the prediction and the weights (BALD; Houlsby et al. 2011),
averaged over voxels: high where dropout samples disagree, i.e. where the model has not seen similar data.
It is stored as ``epistemic_entropy`` in each image's info, the key MONAI Label's ``Epistemic`` strategy ranks by.

Scoring jobs the server starts itself (at start-up, after Next Sample, after training) run in their own process at
a lower CPU priority, so an annotator's requests are not slowed by them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from monai.transforms import Compose
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.checkpoint import load_weights, serving_checkpoint
from lib.config import AppConfig
from lib.datastore.info import MODEL_TS_KEY, SCORE_KEY
from lib.networks import build_network, enable_mc_dropout
from lib.transforms.pipeline import IMAGE, inference_transforms, sliding_window
from lib.transforms.volume_io import VolumeReadError

logger = logging.getLogger(__name__)


def mutual_information(probabilities: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-voxel mutual information of ``(samples, classes, *spatial)`` softmax outputs (nats)."""
    mean = probabilities.mean(0)
    predictive = -(mean * torch.log(mean + eps)).sum(0)
    expected = -(probabilities * torch.log(probabilities + eps)).sum(1).mean(0)
    return (predictive - expected).clamp_min(0)


class EpistemicScoring(ScoringMethod):
    """Score every unlabelled image that has not been scored with the current weights.

    The dropout network comes from :func:`lib.networks.build_network` (the served network's factory) with
    ``app_config.dropout``, and images go through the inference preprocessing.

    Args:
        app_config: the app configuration.
    """

    def __init__(self, app_config: AppConfig) -> None:
        super().__init__("Monte-Carlo dropout uncertainty (mutual information) of unlabelled images")
        self.app_config = app_config

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        path = serving_checkpoint(self.app_config)
        if path is None:
            logger.info("Epistemic scoring skipped: no trained weights yet")
            return {"scored": 0, "skipped": "no trained weights"}
        model_ts = os.stat(path).st_mtime_ns  # weights published within one second still differ
        samples = int(request.get("mc_samples", self.app_config.mc_samples))
        device = self.app_config.torch_device()
        network = build_network(self.app_config.plan, dropout=self.app_config.dropout)
        load_weights(network, path, self.app_config.plan)
        network = enable_mc_dropout(network.to(device))
        transforms = Compose(inference_transforms(self.app_config))
        inferer = sliding_window(self.app_config)

        start, scored, failed = time.time(), 0, []
        for image_id in datastore.get_unlabeled_images():
            if datastore.get_image_info(image_id).get(MODEL_TS_KEY) == model_ts:
                continue
            try:
                image = transforms({IMAGE: datastore.get_image_uri(image_id)})[IMAGE][None].to(device)
            except (VolumeReadError, RuntimeError) as e:  # Compose wraps transform errors in RuntimeError
                logger.warning("Epistemic scoring skipped %s: %s", image_id, e)
                failed.append(image_id)
                continue
            with torch.inference_mode():
                probabilities = torch.stack([torch.softmax(inferer(image, network)[0], 0) for _ in range(samples)])
            score = float(mutual_information(probabilities).mean())
            datastore.update_image_info(image_id, {SCORE_KEY: score, MODEL_TS_KEY: model_ts})
            scored += 1
            logger.info("Epistemic score of %s: %.6f", image_id, score)
        summary = {"scored": scored, "failed": failed, "seconds": round(time.time() - start, 2)}
        logger.info("Epistemic scoring: %s", summary)
        return summary
