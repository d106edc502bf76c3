"""The application that answers the routes :mod:`lib.server.policy` gives to this app (``Handler.APP``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from monailabel.interfaces.app import MONAILabelApp

from lib.server.guard import Access
from lib.server.routes.batch import batch_routes
from lib.server.routes.datastore import datastore_routes
from lib.server.routes.inference import inference_routes
from lib.server.routes.login import login_routes
from lib.server.routes.logs import log_routes
from lib.server.routes.scoring import scoring_routes
from lib.server.routes.training import training_routes

MAX_SHOWN = 100  # characters of a refused value shown back


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each missing or malformed field, without echoing what was sent: FastAPI's own reply repeats the
    whole value (a 900 kB form field came back whole)."""
    problems = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:MAX_SHOWN], "type": e.get("type")}
        for e in error.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


def create_api(instance: MONAILabelApp, access: Access, log_path: str, token_minutes: float) -> FastAPI:
    """This app's endpoints (:mod:`lib.server.routes`), behind the guard.

    Args:
        instance: the running app.
        access: login settings.
        log_path: this server's log file (``GET /logs``).
        token_minutes: lifetime of a login token.
    """
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.include_router(login_routes(access, token_minutes))
    api.include_router(datastore_routes(instance))
    api.include_router(inference_routes(instance))
    api.include_router(training_routes(instance))
    api.include_router(log_routes(log_path))
    api.include_router(batch_routes(instance))
    api.include_router(scoring_routes())
    return api
