"""The ASGI layer in front of every route: body size, route table, names, login and roles."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lib.auth import Role, TokenError, User, UserFileError, UserStore, allows, read_token
from lib.datastore.names import InvalidNameError, check_name, check_tag
from lib.server.policy import Handler, find_rule
from lib.server.redact import redact

logger = logging.getLogger(__name__)

# Who the server's own background processes are (a finished training run asking for scoring).
SERVER_USER = User("server", Role.ADMIN)
# Who everyone is when login is off.
ANONYMOUS = User("anonymous", Role.ADMIN)
ID_PARAMETERS = ("image", "label", "id", "session_id")  # query parameters that name a datastore object or session


@dataclass(frozen=True)
class Access:
    """Who may log in, and how the server recognises its own background processes.

    Attributes:
        users: the users file, or None when login is off (everyone is :data:`ANONYMOUS`).
        internal_token: the token the server's own processes send (random per server start).
    """

    users: UserStore | None
    internal_token: str

    @classmethod
    def create(cls, users: UserStore | None) -> Access:
        return cls(users, secrets.token_urlsafe(32))


class Guard:
    """Refuses what the server must not do before any endpoint runs, then hands the request to its handler.

    Args:
        stock: MONAI Label's application (its middleware and routes).
        app: this app's endpoints (:mod:`lib.server.routes`).
        access: login settings.
        names: for each path parameter (``model``, ``strategy``, ...), the names the server serves now.
        max_body_bytes: largest request body accepted (413 above it).
    """

    def __init__(
        self,
        stock: ASGIApp,
        app: ASGIApp,
        access: Access,
        names: Callable[[], Mapping[str, set[str]]],
        max_body_bytes: int,
    ) -> None:
        self.stock = stock
        # Starlette's limiter counts what is read, for bodies sent without a Content-Length (checked below).
        self._targets = {
            Handler.APP: RequestBodyLimitMiddleware(app, max_body_size=max_body_bytes),
            Handler.STOCK: RequestBodyLimitMiddleware(stock, max_body_size=max_body_bytes),
        }
        self.access = access
        self.names = names
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":  # lifespan; CORS pre-flight (no data)
            await self.stock(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        found = find_rule(method, path)
        rule, parameters = found if found else (None, {})
        # Who asks comes first: without a login, every route but login's answers 401, whatever else is wrong.
        user, problem = self._authenticate(scope)
        if rule is None or rule.role is not None:
            if problem:
                await _reply(send, 401, problem, {"www-authenticate": "Bearer"})
                return
            if rule is not None and not allows(user.role, rule.role):
                await _reply(send, 403, f"user {user.name!r} ({user.role}) may not do this: {rule.role} needed")
                return
        if rule is None:
            await _reply(send, 404, f"{method} {path[:100]} is not served by this server")
            return
        problem = self._check_names(parameters, scope)
        if problem:
            await _reply(send, *problem)
            return
        length = _content_length(scope)
        if length is None:
            await _reply(send, 400, "the Content-Length header is not a number")
            return
        if length > self.max_body_bytes:
            await _reply(send, 413, self._too_large())
            return
        scope.setdefault("state", {})["user"] = user
        if rule.handler is Handler.APP:
            scope["path"] = path.rstrip("/") or "/"  # this app's routes are declared without the trailing slash
        await self._forward(rule.handler, scope, receive, send)

    def _check_names(self, parameters: dict[str, str], scope: Scope) -> tuple[int, str] | None:
        """(status, message) for a path or query parameter that is not an acceptable name, else None."""
        for key, value in parameters.items():
            known = self.names().get(key)
            if known is not None and value not in known:
                return 404, f"unknown {key} {value[:60]!r}; available: {', '.join(sorted(known))}"
            try:
                check_name(value, key)
            except InvalidNameError as e:
                return 422, str(e)
        try:
            query = parse_qsl(
                scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except UnicodeDecodeError:
            return 422, "the query string is not UTF-8"
        for key, value in query:
            try:
                if key in ID_PARAMETERS and value:
                    check_name(value, key)
                elif key == "tag" and value:
                    check_tag(value)
            except InvalidNameError as e:
                return 422, str(e)
        return None

    def _authenticate(self, scope: Scope) -> tuple[User, str | None]:
        """The caller, or why they are not logged in (for a 401)."""
        if self.access.users is None:
            return ANONYMOUS, None
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ANONYMOUS, "log in first: POST /auth/token, then send 'Authorization: Bearer <token>'"
        token = token.strip()
        if not token.isascii():  # tokens are base64url text; compare_digest refuses other characters
            return ANONYMOUS, "the token is not one this server issued (it holds characters other than ASCII)"
        if secrets.compare_digest(token, self.access.internal_token):
            return SERVER_USER, None
        try:
            name, credential = read_token(self.access.users.secret, token)
            user = self.access.users.get(name)
        except TokenError as e:
            return ANONYMOUS, str(e)
        except UserFileError as e:
            logger.error("Login refused: %s", e)
            return ANONYMOUS, "the server cannot read its users file; ask the administrator"
        if user is None:
            return ANONYMOUS, f"user {name!r} no longer exists"
        if not secrets.compare_digest(credential, user.credential):
            return ANONYMOUS, f"the password of user {name!r} has changed since this token was issued: log in again"
        return user, None

    def _too_large(self) -> str:
        limit = self.max_body_bytes // 2**20
        return f"the request body is larger than the server accepts ({limit} MiB; --conf max_upload_mb)"

    async def _forward(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request on; a body without Content-Length that passes the limit while read gets a 413.

        JSON replies are redacted on the way out: MONAI Label's replies carry server paths in places (task logs in
        training status, the MLflow store in ``/info``), and any route that a later version adds may too.
        """
        await self._targets[handler](scope, receive, _redacting(send))


def _redacting(send: Send) -> Send:
    """``send`` that passes JSON replies through :func:`lib.server.redact.redact`, and the rest unchanged."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def redacting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                start = message  # held until the whole body is in
                return
        elif message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            try:
                body = json.dumps(redact(json.loads(body))).encode("utf-8")
            except ValueError:
                pass  # not JSON after all: sent as it is
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return redacting_send


def _content_length(scope: Scope) -> int | None:
    value = dict(scope["headers"]).get(b"content-length")
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return None


async def _reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Send ``{"detail": detail}`` with ``status``, as FastAPI's own errors are shaped."""
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
