"""The application that answers the routes :mod:`lib.server.policy` gives to this app (``Handler.APP``)."""

from __future__ import annotations

from fastapi import FastAPI
from monailabel.interfaces.app import MONAILabelApp

from lib.server.guard import Access
from lib.server.routes.batch import batch_routes
from lib.server.routes.datastore import datastore_routes
from lib.server.routes.inference import inference_routes
from lib.server.routes.login import login_routes
from lib.server.routes.logs import log_routes
from lib.server.routes.scoring import scoring_routes
from lib.server.routes.training import training_routes


def create_api(instance: MONAILabelApp, access: Access, log_path: str, token_minutes: float) -> FastAPI:
    """This app's endpoints (:mod:`lib.server.routes`), behind the guard.

    Args:
        instance: the running app.
        access: login settings.
        log_path: this server's log file (``GET /logs``).
        token_minutes: lifetime of a login token.
    """
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    api.include_router(login_routes(access, token_minutes))
    api.include_router(datastore_routes(instance))
    api.include_router(inference_routes(instance))
    api.include_router(training_routes(instance))
    api.include_router(log_routes(log_path))
    api.include_router(batch_routes(instance))
    api.include_router(scoring_routes())
    return api
