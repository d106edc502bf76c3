from __future__ import annotations

import logging
import os

from lib.server.logs import use_own_log


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
