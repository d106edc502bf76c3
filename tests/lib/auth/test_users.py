from __future__ import annotations

import json
import os
import stat

import pytest

from lib.auth import Role, UserFileError, UserStore
from lib.auth.users import MAX_PASSWORD_BYTES


@pytest.fixture
def store(tmp_path) -> UserStore:
    return UserStore.create(str(tmp_path / "users.json"))


def test_stores_salted_hashes_only_in_an_owner_only_file(store: UserStore) -> None:
    store.add("alice", Role.ANNOTATOR, "correct horse")
    store.add("bob", Role.ANNOTATOR, "correct horse")
    text = open(store.path).read()
    assert "correct horse" not in text
    hashes = [u["password_hash"] for u in json.loads(text)["users"].values()]
    assert hashes[0] != hashes[1] and all(h.startswith("$2b$12$") for h in hashes)  # salted bcrypt
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_authenticates_only_the_right_password(store: UserStore) -> None:
    store.add("alice", Role.REVIEWER, "correct horse")
    assert store.authenticate("alice", "correct horse") == store.get("alice")
    assert store.get("alice").role is Role.REVIEWER
    assert store.authenticate("alice", "wrong horse!") is None
    assert store.authenticate("mallory", "correct horse") is None
    assert store.authenticate("alice", "x" * 200) is None  # over bcrypt's limit: refused, not truncated


def test_changes_by_another_process_are_seen(store: UserStore) -> None:
    store.add("alice", Role.ANNOTATOR, "correct horse")
    assert store.get("alice").role is Role.ANNOTATOR
    other = UserStore(store.path)  # e.g. tumor-users while the server runs
    other.add("alice", Role.ADMIN, "new password")
    assert store.get("alice").role is Role.ADMIN
    other.remove("alice")
    assert store.get("alice") is None


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("../alice", "correct horse", "user name"),
        ("", "correct horse", "user name"),
        ("alice", "short", "at least 8"),
        ("alice", "é" * (MAX_PASSWORD_BYTES // 2 + 1), "72 bytes"),
    ],
)
def test_refuses_bad_names_and_passwords(store: UserStore, name: str, password: str, message: str) -> None:
    with pytest.raises(UserFileError, match=message):
        store.add(name, Role.ANNOTATOR, password)
    assert store.users() == []


def test_refuses_a_file_it_did_not_write(tmp_path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": {"alice": {"role": "admin"}}}')
    with pytest.raises(UserFileError, match="not a users file"):
        UserStore(str(path)).users()
    with pytest.raises(UserFileError, match="already exists"):
        UserStore.create(str(path))
    with pytest.raises(UserFileError, match="cannot read"):
        UserStore(str(tmp_path / "missing.json")).users()
