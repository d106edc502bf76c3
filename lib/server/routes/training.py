"""``/train`` and ``/model``: training runs with checked options, and the admin's replacement of weights."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from monailabel.endpoints.train import run_model
from monailabel.interfaces.app import MONAILabelApp

from lib.checkpoint import CheckpointError, load_state, publish_checkpoint, read_checkpoint
from lib.config import MODELS
from lib.networks import build_network
from lib.server.options import OptionsError, check_train_options
from lib.server.routes.uploads import json_object, save


def _network_of(instance: MONAILabelApp, model: str) -> str:
    """The trained network (segmentation or clicks) an infer model serves; 404 for models without weights."""
    network = getattr(instance._infers[model], "model", None)
    if network not in MODELS:
        raise HTTPException(404, f"model {model!r} has no weights: it needs no training")
    return network


def keep_aside(path: str, why: str) -> str:
    """Rename ``path`` (if it exists) to a time-stamped name beside it, so replaced or removed weights are kept."""
    kept = f"{path}.{datetime.now().strftime('%Y%m%d_%H%M%S_%f')}.{why}"
    if os.path.isfile(path):
        os.replace(path, kept)
    return kept


def training_routes(instance: MONAILabelApp) -> APIRouter:
    """``POST /train[/{trainer}]``; ``PUT`` and ``DELETE /model/{model}``."""
    router = APIRouter()

    @router.post("/train")
    @router.post("/train/{trainer}")
    async def train(request: Request, trainer: str = "", run_sync: bool = False) -> Any:
        if run_sync:
            raise HTTPException(422, "run_sync is not offered: training runs in its own process; poll GET /train/")
        options = json_object(await request.body(), "training options")
        names = [trainer] if trainer else list(instance._trainers)
        for name in names:
            try:
                check_train_options(options, instance._trainers[name].config())
            except OptionsError as e:
                raise HTTPException(422, str(e)) from None
        return run_model(trainer or names[0], options)

    @router.put("/model/{model}")
    def replace_weights(model: str, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        network = _network_of(instance, model)
        folder = instance.config.model_dir
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=folder) as tmp:
            path = save(file, os.path.join(tmp, f"{network}.pt"))
            try:
                state, meta = read_checkpoint(path, instance.config, network)
                load_state(build_network(instance.config, model=network), state, path)
            except CheckpointError as e:
                raise HTTPException(422, f"weights refused: {e}") from None
        served = instance.config.published_path(network)
        keep_aside(served, "replaced")
        uploaded = {**meta, "uploaded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        publish_checkpoint(state, uploaded, served, instance.config, network)
        return {"model": model, "checkpoint": os.path.basename(served)}

    @router.delete("/model/{model}")
    def remove_weights(model: str) -> dict[str, Any]:
        network = _network_of(instance, model)
        served = instance.config.published_path(network)
        if not os.path.isfile(served):
            raise HTTPException(404, f"model {model!r} has no trained weights to remove")
        return {"model": model, "kept_as": os.path.basename(keep_aside(served, "deleted"))}

    return router
