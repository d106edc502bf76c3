"""Auto segmentation: the whole volume by sliding window, written on exactly the input image's grid."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from torch import nn

from lib.checkpoint import load_weights, serving_checkpoint
from lib.config import SEGMENTATION, TumorConfig
from lib.infers.errors import ModelNotTrainedError
from lib.networks import build_network
from lib.transforms.components import KEEP_LARGEST, KEEP_LARGEST_VALUES
from lib.transforms.formats import VOLUME_SUFFIXES
from lib.transforms.pipeline import (
    IMAGE,
    PRED,
    inference_postprocessing,
    inference_transforms,
    sliding_window,
)
from lib.transforms.volume_io import write_label

logger = logging.getLogger(__name__)

RESULT_EXTENSIONS = VOLUME_SUFFIXES  # offered to clients; the first is the default
# Keep only the largest connected component of each label: as validation decided when the served weights were
# trained ("auto"), for every label ("on"), or never ("off"). The first is the default (3D Slicer sends the first).
KEEP_LARGEST_CHOICES = ("auto", "on", "off")


class SegmentationInfer(BasicInferTask):
    """Auto segmentation of the configured labels (values 1..K in label order).

    Keeps only the largest connected component of the labels for which validation chose it when the served weights
    were trained (nnU-Net's post-processing; the ``keep_largest`` option can force it on or off for a request).

    Serves the latest published weights, else the starting checkpoint. With neither it refuses with
    :class:`ModelNotTrainedError` instead of answering with an untrained network. Newly published weights are
    picked up at the next request (the cache is keyed on the checkpoint's path and modification time).

    Args:
        config: the app configuration.
    """

    model = SEGMENTATION

    def __init__(self, config: TumorConfig, infer_type: str = InferType.SEGMENTATION, description: str = "") -> None:
        super().__init__(
            path=None,
            network=None,
            type=infer_type,
            labels=config.label_values,
            dimension=3,
            description=description
            or f"Tumour auto segmentation ({config.modality.upper()}, {', '.join(config.labels)})",
            config={
                "device": [str(config.torch_device())],
                "result_extension": list(RESULT_EXTENSIONS),
                KEEP_LARGEST: list(KEEP_LARGEST_CHOICES),
            },
        )
        self.tumor = config
        self._loaded: dict[str, tuple[nn.Module, str, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def is_valid(self) -> bool:
        """Always listed, so annotators see the model; requests get a clear error until weights exist."""
        return True

    def get_path(self, validate: bool = True) -> str | None:
        return serving_checkpoint(self.tumor)

    def pre_transforms(self, data: Any = None) -> list:
        return inference_transforms(self.tumor)

    def inferer(self, data: Any = None):
        return sliding_window(self.tumor)

    def post_transforms(self, data: Any = None) -> list:
        return inference_postprocessing()

    def clear_cache(self) -> None:
        with self._lock:
            self._loaded.clear()

    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        if self.get_path() is None:
            raise ModelNotTrainedError(
                "The segmentation model has no trained weights yet. Submit at least one corrected label and press "
                "Train (or start the server with --conf checkpoint <file> to load a starting model)."
            )
        extension = _option(request, "result_extension", RESULT_EXTENSIONS)
        keep_largest = _option(request, KEEP_LARGEST, KEEP_LARGEST_CHOICES)
        return super().__call__({**request, "result_extension": extension, KEEP_LARGEST: keep_largest}, callbacks)

    def network_for(self, device: str) -> tuple[nn.Module, dict[str, Any]]:
        """The served network on ``device`` and its checkpoint metadata, reloaded when new weights are published."""
        path = self.get_path()
        if path is None:
            raise ModelNotTrainedError("no trained weights")
        mtime = os.stat(path).st_mtime_ns
        with self._lock:
            cached = self._loaded.get(device)
            if cached and cached[1] == path and cached[2] == mtime:
                return cached[0], cached[3]
            network = build_network(self.tumor, model=self.model)
            meta = load_weights(network, path, self.tumor, self.model)
            network = network.to(torch.device(device)).eval()
            meta = {**meta, "checkpoint": os.path.basename(path)}
            self._loaded[device] = (network, path, mtime, meta)
            logger.info("Loaded weights %s on %s", path, device)
            return network, meta

    def _get_network(self, device: str, data: Any) -> nn.Module:
        return self.network_for(device)[0]

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict:
        network, meta = self.network_for(device)
        image = torch.as_tensor(data[IMAGE])[None].to(torch.device(device))
        with torch.inference_mode():
            logits = self.inferer(data)(image, network)
        data[PRED] = logits[0].cpu()
        data["model_meta"] = meta
        names = self._keep_largest(data[KEEP_LARGEST], meta)
        data[KEEP_LARGEST_VALUES] = [self.tumor.label_values[name] for name in names]
        return data

    def _keep_largest(self, option: str, meta: dict[str, Any]) -> list[str]:
        """Names of the labels to reduce to their largest component, for the request's ``keep_largest`` option."""
        if option == "on":
            return list(self.tumor.labels)
        if option == "off":
            return []
        return [name for name in meta.get(KEEP_LARGEST, []) if name in self.tumor.label_values]

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict]:
        fd, path = tempfile.mkstemp(suffix=data["result_extension"], prefix="segmentation-")
        os.close(fd)
        write_label(torch.as_tensor(data[PRED])[0].numpy(), data[f"{IMAGE}_geometry"], path)
        meta = data.get("model_meta", {})
        model = {k: meta[k] for k in ("checkpoint", "run_id", "published", "val_dice") if k in meta}
        post_processed = [name for name, value in self.tumor.label_values.items() if value in data[KEEP_LARGEST_VALUES]]
        return path, {"model": model, KEEP_LARGEST: post_processed}


def _option(request: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """The request's value of an option offered as ``choices`` (the first when absent; a list sends its first)."""
    value = request.get(key) or choices[0]
    value = value[0] if isinstance(value, list) else value
    if value not in choices:
        raise ValueError(f"{key} {value!r} is not supported; use one of {choices}")
    return value
