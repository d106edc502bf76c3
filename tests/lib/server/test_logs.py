from __future__ import annotations

import logging
import os
import traceback

from lib.config import ConfigError
from lib.server.logs import ShortRefusals, use_own_log


def test_the_servers_log_takes_the_apps_lines_and_uvicorns_errors(tmp_path, monkeypatch) -> None:
    app_dir, own = tmp_path / "app", str(tmp_path / "model" / "logs" / "server-8000.log")
    os.makedirs(app_dir / "logs")
    shared = logging.FileHandler(app_dir / "logs" / "app.log")  # as MONAI Label's logging configuration sets up
    root, server = logging.getLogger(), logging.getLogger("uvicorn")
    monkeypatch.setattr(root, "handlers", [shared])
    monkeypatch.setattr(server, "handlers", [])
    monkeypatch.setattr(server, "propagate", False)  # MONAI Label's: uvicorn writes to the console only
    monkeypatch.setattr(root, "level", logging.INFO)

    use_own_log(str(app_dir), own)
    logging.getLogger("lib.example").warning("a line of the app")
    logging.getLogger("uvicorn.error").error("Exception in ASGI application")
    for handler in root.handlers:
        handler.flush()

    text = open(own).read()
    assert "a line of the app" in text and "Exception in ASGI application" in text
    assert open(app_dir / "logs" / "app.log").read() == ""  # nothing more in the shared file
    for handler in server.handlers:
        handler.close()


def _startup_failure(error: Exception) -> logging.LogRecord:
    """The record uvicorn logs when the app's start-up raises ``error``: Starlette's formatted traceback."""
    try:
        raise error
    except type(error):
        text = traceback.format_exc()
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, text, None, None)


def test_a_refusal_at_startup_is_logged_as_its_message_and_other_errors_keep_their_traceback() -> None:
    refusals = ShortRefusals((ConfigError,))
    refused = _startup_failure(ConfigError("--conf epochs 'x' is not accepted: expected a positive integer"))
    assert refusals.filter(refused)
    assert refused.getMessage() == (
        "The server cannot start: --conf epochs 'x' is not accepted: expected a positive integer"
    )
    crashed = _startup_failure(ZeroDivisionError("division by zero"))
    assert refusals.filter(crashed)
    message = crashed.getMessage()
    assert message.startswith("Traceback (most recent call last):") and "_startup_failure" in message
    assert message.rstrip().endswith("ZeroDivisionError: division by zero")
    plain = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Waiting for %s.", ("startup",), None)
    assert refusals.filter(plain) and plain.getMessage() == "Waiting for startup."
