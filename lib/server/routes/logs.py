"""``/logs``: the end of this server's own log, for admins."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

MAX_LOG_LINES = 10_000


def log_routes(log_path: str) -> APIRouter:
    """``GET /logs?lines=N`` (1 to :data:`MAX_LOG_LINES`, default 300)."""
    router = APIRouter()

    @router.get("/logs")
    def logs(lines: int = 300) -> PlainTextResponse:
        if not 1 <= lines <= MAX_LOG_LINES:
            raise HTTPException(422, f"lines must be 1 to {MAX_LOG_LINES}")
        try:
            with open(log_path, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except FileNotFoundError:
            tail = []
        return PlainTextResponse("".join(tail))

    return router
