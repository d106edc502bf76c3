"""``/train`` and ``/model``: training runs with checked options, and the admin's replacement of weights."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from monailabel.interfaces.app import MONAILabelApp

from lib.checkpoint import CheckpointError, Weights, load_state, publish, read_checkpoint, serving_checkpoint
from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import NETWORKS, NetworkDescription
from lib.server.options import OptionsError, check_train_options
from lib.server.routes.uploads import json_object, save
from lib.server.train_queue import TrainQueue
from lib.shown import shown
from lib.trainers.run_stats import stats_path


def _network_of(model: str) -> NetworkDescription:
    """The trained network an infer model serves; 404 for models without weights."""
    for network in NETWORKS:
        if network.served_as == model:
            return network
    raise HTTPException(404, f"model {model!r} has no weights: it needs no training")


def keep_aside(path: str, why: str) -> str:
    """Rename ``path`` (if it exists) to a time-stamped name beside it, so replaced or removed weights are kept."""
    kept = f"{path}.{datetime.now().strftime('%Y%m%d_%H%M%S_%f')}.{why}"
    if os.path.isfile(path):
        os.replace(path, kept)
    return kept


def serving_after(app_config: AppConfig, network: NetworkDescription) -> str:
    """What ``network`` is served from now that its published weights are gone, in words for the admin."""
    start = serving_checkpoint(app_config, network)
    if start is None:
        return "nothing: the model answers 409 until trained, or until an admin uploads weights for it"
    try:
        read_checkpoint(start, app_config.plan, network)
    except CheckpointError as e:
        # The plan (an ensemble's size among it) follows the weights served at start-up, and is fixed for the run.
        return f"nothing until the server restarts: {e}"
    return f"{os.path.basename(start)} (the starting checkpoint)"


def training_routes(instance: MONAILabelApp) -> APIRouter:
    """``POST``, ``GET`` and ``DELETE /train`` (:class:`TrainQueue`), ``PUT`` and ``DELETE /model/{model}``."""
    router = APIRouter()
    model_dir = instance.app_config.model_dir
    outputs = [path for n in NETWORKS for path in (n.published_path(model_dir), n.last_path(model_dir))]
    queue = TrainQueue(stats_path(model_dir), outputs)

    @router.post("/train")
    @router.post("/train/{trainer}")
    async def train(request: Request, trainer: str = "", run_sync: bool = False) -> Any:
        if run_sync:
            raise HTTPException(422, "run_sync is not offered: training runs in its own process; poll GET /train/")
        options = json_object(await request.body(), "training options")
        name = trainer or next(iter(instance._trainers))
        if name not in instance._trainers:
            raise HTTPException(404, f"unknown trainer {shown(name)}; available: {', '.join(instance._trainers)}")
        try:
            check_train_options(options, instance._trainers[name].config())
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None
        if not instance.datastore().datalist():  # the run would end in an error
            raise HTTPException(409, "no labelled images yet: submit at least one final label before training")
        return queue.submit({**options, "model": name})

    @router.get("/train")
    def training_status(all_tasks: Annotated[bool, Query(alias="all")] = False, check_if_running: bool = False) -> Any:
        try:
            return queue.status(all_tasks, check_if_running)
        except LookupError as e:
            raise HTTPException(404, str(e)) from None

    @router.delete("/train")
    def stop_training() -> Any:
        return queue.stop() or {}

    @router.put("/model/{model}")
    def replace_weights(model: str, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        network = _network_of(model)
        app_config = instance.app_config
        os.makedirs(app_config.model_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=app_config.model_dir) as tmp:
            path = save(file, os.path.join(tmp, network.file))
            try:
                state, meta = read_checkpoint(path, app_config.plan, network)
                load_state(build_network(app_config.plan, network), state, path)
            except CheckpointError as e:
                raise HTTPException(422, f"weights refused: {e}") from None
        served = network.published_path(app_config.model_dir)
        keep_aside(served, "replaced")
        uploaded = {**meta, "uploaded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        publish([Weights(state, uploaded, served)], app_config.plan, [network])
        return {"model": model, "checkpoint": os.path.basename(served)}

    @router.delete("/model/{model}")
    def remove_weights(model: str) -> dict[str, Any]:
        network = _network_of(model)
        served = network.published_path(instance.app_config.model_dir)
        if not os.path.isfile(served):
            raise HTTPException(404, f"model {model!r} has no trained weights to remove")
        kept = keep_aside(served, "deleted")
        return {
            "model": model,
            "kept_as": os.path.basename(kept),
            "serving": serving_after(instance.app_config, network),
        }

    return router
