"""Replace files atomically: readers see the old content or the new, never a partial file.

The server reads stats, weights and the users file while other processes write them; each is written to a
temporary file in the same folder (same file system), flushed to disk and renamed over the target.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable
from typing import IO, Any


def _temporary_prefix(path: str, pid: int | None = None) -> str:
    """The name every temporary file of ``path`` starts with (they end in ``.tmp``); with ``pid``, every one that
    process wrote (:func:`write_temporary` names its own: ``.<name>.<pid>.<random>.tmp``)."""
    return f".{os.path.basename(path)}." + ("" if pid is None else f"{pid}.")


def write_temporary(path: str, write: Callable[[IO], None], binary: bool = False) -> str:
    """Write a complete, synced temporary file beside ``path`` with ``write(file)``; returns its path.

    The temporary file is created with mode 0600 and removed again if ``write`` fails.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path, os.getpid()), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def remove_stale_temporaries(path: str, before: float, writers: Collection[int] = ()) -> list[str]:
    """Remove the temporary files of ``path`` (:func:`write_temporary`'s) last modified before ``before`` (a
    ``time.time()``), and those written by the processes ``writers`` whenever they were modified: what writers
    killed before their rename left behind (name ``writers`` only once they have exited). Returns the removed
    paths."""
    folder = os.path.dirname(os.path.abspath(path))
    theirs = tuple(_temporary_prefix(path, pid) for pid in writers)
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), glob.escape(_temporary_prefix(path)) + "*.tmp")):
        try:
            if os.path.basename(tmp).startswith(theirs) or os.path.getmtime(tmp) < before:
                os.remove(tmp)
                removed.append(tmp)
        except FileNotFoundError:  # renamed or removed meanwhile by its writer
            pass
    return removed


def replace_all(writes: Iterable[tuple[str, Callable[[IO], None], bool]]) -> None:
    """Write every ``(path, write, binary)`` to a temporary file first, then rename each over its target.

    Nothing is replaced unless every file was written completely: a failure (full disk, a killed process) before
    the renames leaves every target as it was. The renames follow each other within microseconds.
    """
    done: list[tuple[str, str]] = []
    try:
        for path, write, binary in writes:
            done.append((write_temporary(path, write, binary), path))
    except BaseException:
        for tmp, _ in done:
            os.remove(tmp)
        raise
    for tmp, path in done:
        os.replace(tmp, path)


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False) -> None:
    """Replace ``path`` with what ``write(file)`` writes."""
    replace_all([(path, write, binary)])


def write_json(path: str, content: Any) -> None:
    """Atomically replace ``path`` with ``content`` as JSON."""
    atomic_write(path, lambda f: json.dump(content, f, indent=2))
