"""``/batch/infer``: pre-segment datastore images in a background job, results stored as ``original`` labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.batch_infer import BatchInferImageType
from monailabel.utils.async_tasks.task import AsyncTask

from lib.checkpoint import serving_checkpoint
from lib.networks.descriptions import SEGMENTATION
from lib.server.routes.uploads import json_object
from lib.shown import shown

# The stock endpoint's options. The server decides the device, workers and label tag (lib.infers.batch); the
# values clients commonly send for them (3D Slicer's and MONAI Label's defaults) are accepted and not used.
IGNORED = {"device", "multi_gpu", "gpus", "logging", "max_workers"}


def batch_routes(instance: MONAILabelApp) -> APIRouter:
    """``POST /batch/infer/{model}``."""
    router = APIRouter()

    @router.post("/batch/infer/{model}")
    async def batch_infer(request: Request, model: str, images: BatchInferImageType = BatchInferImageType.IMAGES_ALL):
        if model != SEGMENTATION.served_as:
            raise HTTPException(422, f"batch inference runs {SEGMENTATION.served_as} only, not {shown(model)}")
        if serving_checkpoint(instance.app_config) is None:
            raise HTTPException(409, "the segmentation model has no trained weights yet: train it first")
        options = json_object(await request.body(), "batch options")
        params: dict[str, Any] = {}
        for key, value in options.items():
            if key in IGNORED:
                continue
            if key == "label_tag" and value == "original" or key == "save_label" and value is True:
                continue
            if key == "max_batch_size" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                params[key] = value
                continue
            raise HTTPException(
                422,
                f"batch option {shown(key)}={shown(value)} is not accepted: results are stored as 'original' labels; "
                "max_batch_size takes an integer >= 0",
            )
        task, detail = AsyncTask.run("batch_infer", request={"model": model, "images": images.value}, params=params)
        if task is None:
            raise HTTPException(429, detail)
        return task

    return router
