"""Publishing one checkpoint in a test, as a training run would (:func:`lib.checkpoint.publish`)."""

from __future__ import annotations

from typing import Any

import torch

from lib.checkpoint import Weights, publish
from lib.config import AppConfig
from lib.networks.descriptions import SEGMENTATION, NetworkDescription


def publish_checkpoint(
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    path: str,
    app_config: AppConfig,
    network: NetworkDescription = SEGMENTATION,
) -> None:
    """Write ``state`` and ``meta`` as a checkpoint of ``network`` to ``path``."""
    publish([Weights(state, meta, path)], app_config.plan, [network])
