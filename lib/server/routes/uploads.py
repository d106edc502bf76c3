"""What every route of :mod:`lib.server.routes` reads from a request: files, JSON options and the caller."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request, UploadFile

from lib.auth import User
from lib.server.options import OptionsError, parse_json_object
from lib.transforms.formats import VOLUME_SUFFIXES, volume_suffix_of


def volume_suffix(filename: str | None) -> str:
    """The volume file type of an upload's file name (its name itself is never used as a path)."""
    name = (filename or "").lower()
    suffix = volume_suffix_of(name)
    if suffix:
        return suffix
    raise HTTPException(422, f"file {os.path.basename(name)[:60]!r} is not a volume: send {', '.join(VOLUME_SUFFIXES)}")


def save(upload: UploadFile, path: str) -> str:
    """Write an upload to ``path``, a megabyte at a time."""
    with open(path, "wb") as f:
        while chunk := upload.file.read(2**20):
            f.write(chunk)
    return path


@contextmanager
def received(upload: UploadFile, stem: str) -> Iterator[str]:
    """The upload saved as ``<stem><suffix>`` in a temporary folder that is removed on leaving, on every path."""
    suffix = volume_suffix(upload.filename)
    with tempfile.TemporaryDirectory(prefix="tumor-upload-") as folder:
        yield save(upload, os.path.join(folder, f"{stem}{suffix}"))


def json_object(text: str | bytes | None, what: str) -> dict[str, Any]:
    """The JSON object a form field or body holds; 422 naming ``what`` otherwise."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        return parse_json_object(text, what)
    except OptionsError as e:
        raise HTTPException(422, str(e)) from None


def caller(request: Request) -> User:
    """Who sent the request (set by :class:`lib.server.guard.Guard`)."""
    return request.state.user
