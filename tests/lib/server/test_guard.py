"""The guard in front of every route, driven as an ASGI app (the integration tests drive it through the server)."""

from __future__ import annotations

import asyncio
import json

import pytest

from lib.auth import Role, UserStore, issue_token
from lib.server.guard import Access, Guard


async def _ok(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"user": scope["state"]["user"].name}).encode()})


def call(guard: Guard, method: str, path: str, headers: dict[bytes, bytes], query: bytes = b"") -> tuple[int, dict]:
    """(status, JSON body) of one request through ``guard``."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": list(headers.items())}
    asyncio.run(guard(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


@pytest.fixture
def guard(tmp_path) -> Guard:
    users = UserStore.create(str(tmp_path / "users.json"))
    users.add("alice", Role.ANNOTATOR, "correct horse")
    return Guard(_ok, _ok, Access.create(users), lambda: {}, max_body_bytes=2**20)


def bearer(token: str) -> dict[bytes, bytes]:
    return {b"authorization": f"Bearer {token}".encode("latin-1")}


def test_a_valid_token_reaches_the_route(guard: Guard) -> None:
    token = issue_token(guard.access.users.secret, "alice", minutes=5)
    assert call(guard, "GET", "/info/", bearer(token)) == (200, {"user": "alice"})


@pytest.mark.parametrize("token", ["café", "é", "ÿÿÿÿ", "tok\u00a0en"])
def test_a_token_that_is_not_ascii_is_a_401_not_a_500(guard: Guard, token: str) -> None:
    status, body = call(guard, "GET", "/info/", bearer(token))
    assert status == 401 and "not one this server issued" in body["detail"]
    # Login's own routes need no token: a stray header must not stop 3D Slicer from reaching them.
    assert call(guard, "GET", "/auth/", bearer(token))[0] == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [(b"image=a%C2%85b", "invisible or control"), (b"image=%FF", "not valid UTF-8"), (b"image=x.nii.gz", "file type")],
)
def test_ids_in_the_query_are_checked_before_the_route(guard: Guard, query: bytes, message: str) -> None:
    token = issue_token(guard.access.users.secret, "alice", minutes=5)
    status, body = call(guard, "GET", "/datastore/image", bearer(token), query)
    assert status == 422 and message in body["detail"]
