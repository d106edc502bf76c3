"""Read and publish network weights.

A checkpoint is a weights-only dictionary ``{"model": state_dict, "meta": {...}}``; ``meta["architecture"]``
records the plan and network it was trained for (:meth:`NetworkDescription.architecture`), so a checkpoint for
other labels, channels or preprocessing is refused with a clear message. Publishing writes complete temporary
files first and renames them over the served ones (:mod:`lib.atomic`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lib.atomic import replace_all
from lib.config.app_config import AppConfig
from lib.config.plan import ModelPlan
from lib.networks.descriptions import SEGMENTATION, NetworkDescription

logger = logging.getLogger(__name__)

SHIPPED_FOLDER = "pretrained"  # in the app folder: <modality>_tumor.pt and its model card


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used with the configured network."""


@dataclass(frozen=True)
class Weights:
    """Weights to publish: a state dict, its metadata and the file it goes to."""

    state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: str


def read_checkpoint(
    path: str, plan: ModelPlan, network: NetworkDescription = SEGMENTATION
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint (weights only) and check it was trained for ``network`` under ``plan``.

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
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {name}: its meta is a {type(meta).__name__}, not a dictionary")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"checkpoint {name} holds no state dict (parameter names mapped to tensors)")
    broken = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:
        raise CheckpointError(f"checkpoint {name} holds NaN or infinite weights ({broken[:80]})")
    trained_for = meta.get("architecture")
    if trained_for is not None and trained_for != network.architecture(plan):
        raise CheckpointError(
            f"checkpoint {name} was trained for {trained_for}, but the app is configured for "
            f"{network.architecture(plan)}; train again or point --conf checkpoint to a matching file"
        )
    return state, meta


def load_state(network: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Load ``state`` (read from checkpoint ``path``) into ``network``, strictly."""
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {os.path.basename(path)} does not fit the configured network: {str(e)[:300]}"
        ) from e


def load_weights(
    module: nn.Module, path: str, plan: ModelPlan, network: NetworkDescription = SEGMENTATION
) -> dict[str, Any]:
    """Load checkpoint weights of ``network`` into ``module`` (strict) and return the checkpoint's metadata."""
    state, meta = read_checkpoint(path, plan, network)
    load_state(module, state, path)
    return meta


def publish(weights: Sequence[Weights], plan: ModelPlan, networks: Sequence[NetworkDescription]) -> None:
    """Replace each ``weights[i].path`` with a checkpoint of ``networks[i]``, all or none.

    Every checkpoint is written completely before the first is renamed over its served file (:func:`replace_all`).
    """

    def writer(item: Weights, network: NetworkDescription):
        content = {
            "model": {k: v.detach().cpu() for k, v in item.state.items()},
            "meta": {**item.meta, "architecture": network.architecture(plan)},
        }
        return lambda f: torch.save(content, f)

    replace_all([(w.path, writer(w, n), True) for w, n in zip(weights, networks, strict=True)])
    for item in weights:
        logger.info("Published weights %s (%s)", item.path, item.meta.get("run_id", "no run id"))


def serving_checkpoint(app_config: AppConfig, network: NetworkDescription = SEGMENTATION) -> str | None:
    """The checkpoint ``network`` is served from: its published weights, else (segmentation only) the starting
    checkpoint, else None."""
    published = network.published_path(app_config.model_dir)
    if os.path.isfile(published):
        return published
    if network == SEGMENTATION and app_config.checkpoint and os.path.isfile(app_config.checkpoint):
        return app_config.checkpoint
    return None


def shipped_path(plan: ModelPlan, app_dir: str) -> str:
    """Where the app's starting model for ``plan.modality`` is shipped (the file may not exist)."""
    return os.path.join(app_dir, SHIPPED_FOLDER, f"{plan.modality}_tumor.pt")


def recorded_ensemble(candidates: Sequence[str]) -> int:
    """The ensemble size recorded in the first of ``candidates`` that exists (1 when it records none).

    An unreadable file counts as 1: loading it later reports what is wrong with it.
    """
    for path in candidates:
        if os.path.isfile(path):
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
                return int(checkpoint["meta"]["architecture"].get("ensemble", 1))
            except Exception:  # noqa: BLE001 - see the docstring
                return 1
    return 1


def shipped_checkpoint(plan: ModelPlan, app_dir: str) -> str:
    """The starting model shipped with the app for ``plan.modality``, or "" when there is none that fits.

    A shipped model fits when it was trained for exactly this plan; otherwise the app starts untrained, and says
    why in the log.
    """
    path = shipped_path(plan, app_dir)
    if not os.path.isfile(path):
        return ""
    try:
        if "architecture" not in read_checkpoint(path, plan, SEGMENTATION)[1]:
            raise CheckpointError("it records no plan to check against")
    except CheckpointError as e:
        logger.warning("The shipped model %s cannot be used (%s): starting untrained", path, e)
        return ""
    return path
