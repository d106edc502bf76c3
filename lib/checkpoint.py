"""Read and publish network weights.

A checkpoint is a weights-only dictionary ``{"model": state_dict, "meta": {...}}``; ``meta`` records the
architecture it was trained for (so a checkpoint for other labels or channels is refused with a clear message)
and facts about the run that produced it. Publishing writes to a temporary file in the same folder and renames
it over the served file, so the served file is always a complete checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from torch import nn

from lib.config import SEGMENTATION, TumorConfig

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used with the configured network."""


def read_checkpoint(
    path: str, config: TumorConfig, model: str = SEGMENTATION
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint (weights only) and check it fits the configured architecture.

    Args:
        path: checkpoint file.
        config: the app configuration.
        model: which of the app's networks the checkpoint is for (segmentation or clicks).

    Returns:
        The state dict and the checkpoint's metadata (empty for a bare state dict).

    Raises:
        CheckpointError: when the file cannot be read or was trained for another architecture.
    """
    name = os.path.basename(path)  # messages reach clients: the file's name, never the server's folders
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any read failure means the file is unusable
        raise CheckpointError(f"cannot read checkpoint {name}: {str(e)[:200]}") from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {name} holds no state dict")
    state = checkpoint.get("model", checkpoint)
    meta = checkpoint.get("meta", {}) if "model" in checkpoint else {}
    trained_for = meta.get("architecture")
    if trained_for is not None and trained_for != config.architecture(model):
        raise CheckpointError(
            f"checkpoint {name} was trained for {trained_for}, but the app is configured for "
            f"{config.architecture(model)}; train again or point --conf checkpoint to a matching file"
        )
    return state, meta


def load_state(network: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load ``state`` (read from checkpoint ``path``) into ``network``, strictly."""
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {os.path.basename(path)} does not fit the configured network: {str(e)[:300]}"
        ) from e


def load_weights(network: nn.Module, path: str, config: TumorConfig, model: str = SEGMENTATION) -> dict[str, Any]:
    """Load checkpoint weights of ``model`` into ``network`` (strict) and return the checkpoint's metadata."""
    state, meta = read_checkpoint(path, config, model)
    load_state(network, state, path)
    return meta


def publish_checkpoint(
    state: dict[str, torch.Tensor], meta: dict[str, Any], path: str, config: TumorConfig, model: str = SEGMENTATION
) -> None:
    """Atomically replace ``path`` with a checkpoint of ``state`` and ``meta`` (``model``'s architecture)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    meta = {**meta, "architecture": config.architecture(model)}
    fd, tmp = tempfile.mkstemp(prefix=".publishing-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"model": {k: v.detach().cpu() for k, v in state.items()}, "meta": meta}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info("Published weights %s (%s)", path, meta.get("run_id", "no run id"))


def serving_checkpoint(config: TumorConfig) -> str | None:
    """The checkpoint inference uses: the latest published weights, else the starting checkpoint, else None."""
    if os.path.isfile(config.published_path()):
        return config.published_path()
    if config.checkpoint and os.path.isfile(config.checkpoint):
        return config.checkpoint
    return None
