"""MONAI Label's random strategy, with weights that are always valid."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.activelearning.random import Random

logger = logging.getLogger(__name__)


class RandomLeastRecent(Random):
    """A random unlabelled image, weighted by the seconds since this strategy last served it, plus one.

    MONAI Label's weights are the seconds alone: when every unlabelled image had been served within the current
    second (two annotators, a few images), they were all 0 and the request failed with a 500; a clock set back
    made them negative.
    """

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        strategy = request["strategy"]
        now = int(time.time())
        served = [datastore.get_image_info(i).get("strategy", {}).get(strategy, {}).get("ts", 0) for i in images]
        weights = [max(now - ts, 0) + 1 for ts in served]
        image = random.choices(images, weights=weights)[0]
        logger.info("Random: selected image %s of %d", image, len(images))
        return {"id": image, "weight": weights[images.index(image)]}
