"""``/auth``: login as 3D Slicer's module speaks it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request

from lib.auth import UserFileError, issue_token
from lib.auth.throttle import LoginThrottle
from lib.server.guard import Access
from lib.server.routes.uploads import caller

logger = logging.getLogger(__name__)


def login_routes(access: Access, token_minutes: float) -> APIRouter:
    """``GET /auth`` (is login on?), ``POST /auth/token`` (user name and password for a token),
    ``GET /auth/token/valid``."""
    router = APIRouter()
    throttle = LoginThrottle()

    @router.get("/auth")
    def auth_enabled() -> dict[str, Any]:
        return {"enabled": access.users is not None, "client_id": "tumor-annotation", "realm": None}

    @router.post("/auth/token")
    def login(
        request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
    ) -> dict[str, Any]:
        if access.users is None:
            raise HTTPException(400, "login is off on this server: no token is needed")
        client = request.client.host if request.client else "?"
        wait_s = throttle.attempt(client)  # counted as a failure until the password is found right
        if wait_s > 0:
            logger.warning("Login refused for %r from %s: too many failed logins", username[:64], client)
            raise HTTPException(
                429,
                f"too many failed logins from this address: try again in {int(wait_s) + 1} s",
                headers={"Retry-After": str(int(wait_s) + 1)},
            )
        try:
            user = access.users.authenticate(username, password)
        except UserFileError as e:
            logger.error("Login impossible: %s", e)
            raise HTTPException(503, "the server cannot read its users file; ask its administrator") from None
        if user is None:
            logger.warning("Login refused for %r from %s", username[:64], client)
            raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
        throttle.succeeded(client)
        logger.info("Login: %s (%s) from %s", user.name, user.role, client)
        token = issue_token(access.users.secret, user.name, token_minutes, user.credential)
        return {"access_token": token, "token_type": "bearer", "expires_in": int(token_minutes * 60)}

    @router.get("/auth/token/valid")
    def token_valid(request: Request) -> dict[str, Any]:
        user = caller(request)
        return {"username": user.name, "roles": [str(user.role)]}

    return router
