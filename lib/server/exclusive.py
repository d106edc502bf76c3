"""One server per model folder and per studies folder.

A second server on the same ``model_dir`` would publish its weights over the first's, settle the first's running
training as ended and share its correction log; on the same studies folder, both would hand annotators the same
Next Sample and rewrite one datastore index from two views. So a server holds an exclusive lock on each folder
for as long as it runs (an OS lock: it ends with the process, even a killed one, and leaves nothing stale), and a
second server started on either folder stops at start-up with a message naming the first.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from filelock import FileLock, Timeout

from lib.config import ConfigError

logger = logging.getLogger(__name__)
LOCK_FILE, OWNER_FILE = ".server.lock", ".server.json"
_held: list[FileLock] = []  # kept for the life of the process


def _owner(folder: str) -> dict | None:
    """Who holds ``folder``, as its owner file says (None when it cannot be read)."""
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as f:
            owner = json.load(f)
        return {"pid": int(owner["pid"]), "host": str(owner["host"]), "port": int(owner["port"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refusal(folder: str, what: str, port: int) -> str:
    """Why ``folder`` cannot be held: who holds it, and what to do."""
    advice = "stop it, or give this server its own folder"
    owner = _owner(folder)
    if owner is None:
        return f"{what} {folder} is in use by another running server; {advice}"
    holder = f"process {owner['pid']} on {owner['host']}, port {owner['port']}"
    if owner["port"] == port and owner["host"] == socket.gethostname() and owner["pid"] != os.getpid():
        # uvicorn's --workers: each worker process would be a server of its own (its own image list, Next Sample
        # lock and training queue), so only the first starts.
        return (
            f"{what} {folder} is in use by another worker of this server ({holder}): start_server --workers must "
            "be 1 (each worker would be a separate server, with its own list of images and its own training queue)"
        )
    return f"{what} {folder} is in use by another running server ({holder}); {advice}"


def hold(folder: str, what: str, port: int, required: bool = True) -> bool:
    """Lock ``folder`` for this server, or refuse to start when another server holds it.

    Args:
        folder: the folder to hold.
        what: how the message names it (``--conf model_dir``, ``the studies folder``).
        port: this server's port, recorded for the message another server would show.
        required: False to start anyway, with a warning, when the folder is read-only (a studies share): a
            writable folder must take the lock in any case.

    Returns:
        Whether the folder is held.

    Raises:
        ConfigError: when another running server holds ``folder``, or it cannot be locked (unless it is read-only
            and not ``required``).
    """
    lock = FileLock(os.path.join(folder, LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(_refusal(folder, what, port)) from None
    except OSError as e:
        if required or os.access(folder, os.W_OK):
            raise ConfigError(f"{what} {folder} cannot be locked for this server: {e.strerror}") from None
        logger.warning("%s %s cannot be locked (%s): another server could use it at the same time", what, folder, e)
        return False
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "port": port}
    try:
        with open(os.path.join(folder, OWNER_FILE), "w", encoding="utf-8") as f:
            json.dump(owner, f)
    except OSError as e:  # the lock holds without it; only the message of a second server is vaguer
        logger.warning("Cannot record this server in %s: %s", folder, e)
    _held.append(lock)
    return True
