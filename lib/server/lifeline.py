"""Background processes (training, scoring) live only as long as the server that started them.

The server records who it is in the environment its child processes inherit; a child checks every second that
this server still runs (the same process, not a reused pid) and ends at once when it does not, ``kill -9`` of the
server included, so a run whose server died never publishes weights or writes to the datastore.
"""

from __future__ import annotations

import logging
import os
import threading

import psutil

logger = logging.getLogger(__name__)

SERVER_ENV = "TUMOR_SERVER_PROCESS"  # "<pid>:<create time>" of the server
CHECK_EVERY_S = 1.0
EXIT_STATUS = 3


def mark_server() -> None:
    """Record this process as the server, for the processes it starts."""
    me = psutil.Process()
    os.environ[SERVER_ENV] = f"{me.pid}:{me.create_time()}"


def _server() -> tuple[int, float] | None:
    value = os.environ.get(SERVER_ENV, "")
    pid, _, created = value.partition(":")
    try:
        return int(pid), float(created)
    except ValueError:
        return None


def server_alive() -> bool:
    """Whether the server that started this process still runs (True when none did: a process run by hand)."""
    server = _server()
    if server is None or server[0] == os.getpid():
        return True
    try:
        process = psutil.Process(server[0])
        return process.create_time() == server[1] and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def follow_server() -> None:
    """In a process the server started: end this process as soon as the server is gone."""
    server = _server()
    if server is None or server[0] == os.getpid():
        return

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(CHECK_EVERY_S):
            if not server_alive():
                logger.error("The server (pid %d) has ended: this background process ends too", server[0])
                os._exit(EXIT_STATUS)

    threading.Thread(target=watch, name="server-lifeline", daemon=True).start()
