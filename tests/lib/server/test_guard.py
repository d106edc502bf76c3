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


def login(guard: Guard, name: str = "alice") -> str:
    """A token as ``POST /auth/token`` issues it."""
    users = guard.access.users
    return issue_token(users.secret, name, minutes=5, credential=users.get(name).credential)


def test_a_valid_token_reaches_the_route(guard: Guard) -> None:
    assert call(guard, "GET", "/info/", bearer(login(guard))) == (200, {"user": "alice"})


def test_a_token_stops_when_the_password_changes_or_the_user_is_added_again(guard: Guard) -> None:
    users = guard.access.users
    old = login(guard)
    users.add("alice", Role.ANNOTATOR, "another horse")  # a new password
    status, body = call(guard, "GET", "/info/", bearer(old))
    assert status == 401 and "has changed since this token was issued" in body["detail"]
    token = login(guard)
    users.remove("alice")
    users.add("alice", Role.ANNOTATOR, "another horse")  # the same password, but a new account (a new salt)
    assert call(guard, "GET", "/info/", bearer(token))[0] == 401
    # A token without the credential (as issued before it was added) is refused too.
    assert call(guard, "GET", "/info/", bearer(issue_token(users.secret, "alice", minutes=5)))[0] == 401


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
    status, body = call(guard, "GET", "/datastore/image", bearer(login(guard)), query)
    assert status == 422 and message in body["detail"]
