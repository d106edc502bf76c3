"""Inference with one of the app's trained networks: whole volume by sliding window, written on the input's grid."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any

import torch
from monailabel.tasks.infer.basic_infer import BasicInferTask
from torch import nn

from lib.checkpoint import load_weights, serving_checkpoint
from lib.config import AppConfig
from lib.infers.errors import ModelNotTrainedError
from lib.networks import build_network
from lib.networks.descriptions import NetworkDescription
from lib.transforms.components import KEEP_LARGEST, KEEP_LARGEST_VALUES
from lib.transforms.formats import VOLUME_SUFFIXES
from lib.transforms.pipeline import IMAGE, PRED, inference_postprocessing, inference_transforms, sliding_window
from lib.transforms.volume_io import write_label

logger = logging.getLogger(__name__)

RESULT_EXTENSIONS = VOLUME_SUFFIXES  # offered to clients; the first is the default


def option(request: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """The request's value of an option offered as ``choices`` (the first when absent; a list sends its first)."""
    value = request.get(key) or choices[0]
    value = value[0] if isinstance(value, list) else value
    if value not in choices:
        raise ValueError(f"{key} {value!r} is not supported; use one of {choices}")
    return value


class ServedNetworkInfer(BasicInferTask):
    """Serves ``network``'s published weights (the segmentation network falls back to the starting checkpoint).

    Newly published weights are picked up at the next request (the loaded network is cached per device, keyed on
    the checkpoint's path and modification time). Without weights a request gets :class:`ModelNotTrainedError`.

    Args:
        app_config: the app configuration.
        network: the network served.
        infer_type: MONAI Label's model type (which 3D Slicer panel shows it).
        description: shown in 3D Slicer.
        options: the model's own options offered to clients, beyond the device and result extension.
        untrained_message: the reason given while no weights exist.
    """

    def __init__(
        self,
        app_config: AppConfig,
        network: NetworkDescription,
        infer_type: str,
        description: str,
        options: dict[str, Any],
        untrained_message: str,
    ) -> None:
        super().__init__(
            path=None,
            network=None,
            type=infer_type,
            labels=app_config.plan.label_values,
            dimension=3,
            description=description,
            config={"device": [str(app_config.torch_device())], "result_extension": list(RESULT_EXTENSIONS), **options},
        )
        self.app_config = app_config
        self.served = network
        self.untrained_message = untrained_message
        self._loaded: dict[str, tuple[nn.Module, str, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get_path(self, validate: bool = True) -> str | None:
        return serving_checkpoint(self.app_config, self.served)

    def pre_transforms(self, data: Any = None) -> list:
        return inference_transforms(self.app_config)

    def inferer(self, data: Any = None):
        return sliding_window(self.app_config)

    def post_transforms(self, data: Any = None) -> list:
        return inference_postprocessing()

    def clear_cache(self) -> None:
        with self._lock:
            self._loaded.clear()

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        if self.get_path() is None:
            raise ModelNotTrainedError(self.untrained_message)
        extension = option(request, "result_extension", RESULT_EXTENSIONS)
        return super().__call__({**request, "result_extension": extension}, callbacks)

    def network_for(self, device: str) -> tuple[nn.Module, dict[str, Any]]:
        """The served network on ``device`` and its checkpoint metadata, reloaded when new weights are published."""
        path = self.get_path()
        if path is None:
            raise ModelNotTrainedError(self.untrained_message)
        mtime = os.stat(path).st_mtime_ns
        with self._lock:
            cached = self._loaded.get(device)
            if cached and cached[1] == path and cached[2] == mtime:
                return cached[0], cached[3]
            network = build_network(self.app_config.plan, self.served)
            meta = load_weights(network, path, self.app_config.plan, self.served)
            network = network.to(torch.device(device)).eval()
            meta = {**meta, "checkpoint": os.path.basename(path)}
            self._loaded[device] = (network, path, mtime, meta)
            logger.info("Loaded weights %s on %s", path, device)
            return network, meta

    def _get_network(self, device: str, data: Any) -> nn.Module:
        return self.network_for(device)[0]

    def keep_largest(self, data: dict[str, Any], meta: dict[str, Any]) -> list[str]:
        """Names of the labels reduced to their largest connected component; none unless a subclass decides."""
        return []

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        network, meta = self.network_for(device)
        image = torch.as_tensor(data[IMAGE])[None].to(torch.device(device))
        with torch.inference_mode():
            logits = self.inferer(data)(image, network)
        data[PRED] = logits[0].cpu()
        data["model_meta"] = meta
        data[KEEP_LARGEST_VALUES] = [self.app_config.plan.label_values[name] for name in self.keep_largest(data, meta)]
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        fd, path = tempfile.mkstemp(suffix=data["result_extension"], prefix=f"{self.served.name}-")
        os.close(fd)
        write_label(torch.as_tensor(data[PRED])[0].numpy(), data[f"{IMAGE}_geometry"], path)
        meta = data.get("model_meta", {})
        model = {k: meta[k] for k in ("checkpoint", "run_id", "published", "val_dice", "train_dice") if k in meta}
        values = data[KEEP_LARGEST_VALUES]
        post_processed = [name for name, value in self.app_config.plan.label_values.items() if value in values]
        return path, {"model": model, KEEP_LARGEST: post_processed}
