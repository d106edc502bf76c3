"""Background processes (training, scoring) live only as long as the server that started them.

The server records who it is in the environment its child processes inherit; a child checks every second that
this server still runs (the same process, not a reused pid) and ends at once when it does not, ``kill -9`` of the
server included, so a run whose server died never publishes weights or writes to the datastore. A child can check
only once it has imported its libraries (seconds), so a server that exits normally (Ctrl+C, ``SIGTERM``) also ends
its children itself on the way out.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
from types import FrameType

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


def end_children_at_exit(grace_s: float = 5.0) -> None:
    """In the server: when it is stopped (``SIGTERM``, Ctrl+C) or exits, end the processes it started (terminate,
    then kill after ``grace_s``), rather than leave each to notice. Call from the main thread.

    uvicorn ends the server on ``SIGTERM`` by raising the signal again once it has shut down, which skips ``atexit``:
    so its handler is wrapped as well.
    """
    server = os.getpid()

    def end() -> None:
        if os.getpid() != server:  # a forked copy of the server
            return
        children = psutil.Process().children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=grace_s)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if children:
            logger.info("Ended %d background process(es) of the server on its way out", len(children))

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        end()
        if callable(previous):
            previous(signum, frame)
        else:  # the default: end the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    atexit.register(end)
