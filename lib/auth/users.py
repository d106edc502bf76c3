"""The users file: names, roles and salted bcrypt password hashes, plus the secret that signs tokens.

The file is JSON, written atomically with owner-only permissions by ``tumor-users`` (:mod:`lib.auth.cli`). The
server re-reads it when it changes, so users added, removed or given another role take effect without a restart,
and the tokens of a removed user stop working at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field

import bcrypt

from lib.atomic import write_json
from lib.auth.roles import Role

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt reads at most 72 bytes; longer passwords are refused, not silently cut
_VERSION = 1
# Checked against when the user does not exist, so that a login takes as long for an unknown name as a known one.
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=12))


class UserFileError(ValueError):
    """The users file, a user name or a password is not acceptable; the message says why."""


@dataclass(frozen=True)
class User:
    """A user of the server.

    ``credential`` is a digest of the password hash, which tokens carry (:func:`lib.auth.issue_token`): it changes
    when the password does, and when the user is removed and added again (a new salt). Empty for the server's own
    identities, which have no password.
    """

    name: str
    role: Role
    credential: str = field(default="", repr=False)


def _user(name: str, entry: dict[str, str]) -> User:
    """The :class:`User` that a users-file entry describes."""
    credential = hashlib.sha256(entry["password_hash"].encode("ascii")).hexdigest()[:32]
    return User(name, Role.parse(entry["role"]), credential)


def check_username(name: str) -> str:
    """``name`` if it is a plain user name (letters, digits, ``._@-``, at most 64 characters)."""
    if not USERNAME.match(name):
        raise UserFileError(
            f"user name {name!r} is not accepted: use 1-64 letters, digits or ._@- (starting with a letter or digit)"
        )
    return name


def check_password(password: str) -> bytes:
    """The password's bytes if it is long enough for a login and short enough for bcrypt."""
    data = password.encode("utf-8")
    if len(password) < MIN_PASSWORD:
        raise UserFileError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(data) > MAX_PASSWORD_BYTES:
        raise UserFileError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")
    return data


class UserStore:
    """The users file at ``path``.

    Args:
        path: the JSON users file; :meth:`create` makes a new one.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._content: dict = {}

    @classmethod
    def create(cls, path: str) -> UserStore:
        """A new, empty users file with a fresh token-signing secret; refuses to overwrite an existing file."""
        if os.path.exists(path):
            raise UserFileError(f"{path} already exists")
        store = cls(path)
        store._write({"version": _VERSION, "secret": secrets.token_hex(32), "users": {}})
        return store

    def _read(self) -> dict:
        """The file's content, re-read when the file has changed since the last read."""
        try:
            status = os.stat(self.path)
        except OSError as e:
            raise UserFileError(f"cannot read the users file {self.path}: {e.strerror}") from None
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        content = json.load(f)
                except (OSError, ValueError) as e:
                    raise UserFileError(f"cannot read the users file {self.path}: {e}") from None
                if (
                    not isinstance(content, dict)
                    or content.get("version") != _VERSION
                    or not isinstance(content.get("secret"), str)
                    or not isinstance(content.get("users"), dict)
                ):
                    raise UserFileError(f"{self.path} is not a users file written by tumor-users")
                self._content, self._stamp = content, stamp
            return self._content

    def _write(self, content: dict) -> None:
        write_json(self.path, content)  # a temporary file created with mode 0600, renamed over the users file

    @property
    def secret(self) -> str:
        """The key that signs this server's tokens."""
        return self._read()["secret"]

    def users(self) -> list[User]:
        """Every user, by name."""
        return [_user(name, entry) for name, entry in sorted(self._read()["users"].items())]

    def get(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        entry = self._read()["users"].get(name)
        return None if entry is None else _user(name, entry)

    def add(self, name: str, role: Role, password: str) -> User:
        """Add a user, or replace the role and password of an existing one."""
        check_username(name)
        digest = bcrypt.hashpw(check_password(password), bcrypt.gensalt(rounds=12)).decode("ascii")
        content = json.loads(json.dumps(self._read()))
        content["users"][name] = {"role": str(role), "password_hash": digest}
        self._write(content)
        return _user(name, content["users"][name])

    def remove(self, name: str) -> None:
        """Remove the user called ``name``; their tokens stop working at once."""
        content = json.loads(json.dumps(self._read()))
        if content["users"].pop(name, None) is None:
            raise UserFileError(f"no user called {name!r}")
        self._write(content)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (the same bcrypt work either way)."""
        entry = self._read()["users"].get(name)
        digest = entry["password_hash"].encode("ascii") if entry else _DUMMY_HASH
        data = password.encode("utf-8")
        matches = len(data) <= MAX_PASSWORD_BYTES and bcrypt.checkpw(data, digest)
        return _user(name, entry) if entry and matches else None
