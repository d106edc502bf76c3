"""Pre-segment many datastore images in one background job (``POST /batch/infer/{model}``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.batch_infer import BatchInferTask

from lib.config import AppConfig

logger = logging.getLogger(__name__)


class TumorBatchInfer(BatchInferTask):
    """MONAI Label's batch inference on the server's own device.

    Stock MONAI Label spreads images over ``cuda:N`` devices whatever the client sends, which divides by zero on a
    CPU server (the module's default request asks for ``multi_gpu``). Here the server decides: every visible GPU
    when the app runs on CUDA and more than one is visible, else the configured device with one worker (parallel
    workers on CPU only share the same cores). Results are stored with the ``original`` tag, never as a final
    label.

    Args:
        app_config: the app configuration.
    """

    def __init__(self, app_config: AppConfig) -> None:
        self.app_config = app_config

    def __call__(self, request: dict[str, Any], datastore: Datastore, infer: Callable) -> dict[str, Any]:
        device = self.app_config.torch_device()
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        request = {
            **request,
            "device": str(device),
            "multi_gpu": gpus > 1,
            "gpus": "all",
            "max_workers": max(gpus, 1),
            "label_tag": DefaultLabelTag.ORIGINAL.value,
            "save_label": True,
        }
        logger.info("Batch inference of %s on %s", request.get("images"), f"{gpus} GPUs" if gpus > 1 else device)
        return super().__call__(request, datastore, infer)
