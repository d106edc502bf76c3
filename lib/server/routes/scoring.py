"""``POST /scoring[/{method}]``: an admin's (or a finished training run's) request to score the unlabelled images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from monailabel.endpoints.scoring import run, run_method

from lib.server.routes.uploads import json_object


def scoring_routes() -> APIRouter:
    """Scoring with the server's own settings: no options, never while the request waits.

    MONAI Label's endpoints merge a request's options into the scoring job's (a ``bundle_path`` would go on the
    job's Python path, an ``mc_samples`` of thousands would run for hours) and ``run_sync`` scores inside the
    request, holding up every other request to the server meanwhile.
    """
    router = APIRouter()

    async def options_of(request: Request, run_sync: bool) -> None:
        if run_sync:
            raise HTTPException(422, "run_sync is not offered: scoring runs in its own process; poll GET /scoring/")
        if json_object(await request.body(), "scoring options"):
            raise HTTPException(422, "scoring takes no options: it uses the server's configuration (mc_samples...)")

    @router.post("/scoring")
    async def score_all(request: Request, run_sync: bool = False) -> dict[str, Any]:
        await options_of(request, run_sync)
        return await run_in_threadpool(run)  # queued behind a running job, as a finished training run needs

    @router.post("/scoring/{method}")
    async def score_with(request: Request, method: str, run_sync: bool = False) -> dict[str, Any]:
        await options_of(request, run_sync)
        return await run_in_threadpool(run_method, method)  # 429 while a job runs

    return router
