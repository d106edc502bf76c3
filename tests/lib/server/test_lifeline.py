"""A background process ends when the server that started it ends, ``kill -9`` included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from lib.server import lifeline

CHILD = """
import sys, time
from lib.server.lifeline import follow_server, server_alive
assert server_alive()
follow_server()
print("following", flush=True)
time.sleep(60)
"""

SERVER = f"""
import subprocess, sys, time
from lib.server.lifeline import mark_server
mark_server()
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=sys.stdout, stderr=open(sys.argv[1], "w"))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_child_ends_when_its_server_is_killed(tmp_path) -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = {**os.environ, "PYTHONPATH": root}
    command = [sys.executable, "-c", SERVER, str(tmp_path / "child.log")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    child = psutil.Process(int(server.stdout.readline()))
    assert server.stdout.readline().strip() == "following"
    assert child.is_running()

    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.2)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert f"The server (pid {server.pid}) has ended" in (tmp_path / "child.log").read_text()


def test_a_process_run_by_hand_follows_no_server(monkeypatch) -> None:
    monkeypatch.delenv(lifeline.SERVER_ENV, raising=False)
    assert lifeline.server_alive()
    monkeypatch.setenv(lifeline.SERVER_ENV, f"{os.getpid()}:{psutil.Process().create_time()}")
    assert lifeline.server_alive()  # this process is the server
    monkeypatch.setenv(lifeline.SERVER_ENV, f"{os.getppid()}:1.0")  # a pid reused by another process
    assert not lifeline.server_alive()


EXITING_SERVER = """
import subprocess, sys, time
from lib.server.lifeline import end_children_at_exit, mark_server
mark_server()
end_children_at_exit()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # still importing, say
print(child.pid, flush=True)
sys.stdin.readline()  # exits normally (as on Ctrl+C or SIGTERM) when told
"""


def exiting_server() -> tuple[subprocess.Popen, psutil.Process]:
    """A server process that started one child, and the child."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = {**os.environ, "PYTHONPATH": root}
    server = subprocess.Popen(
        [sys.executable, "-c", EXITING_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    return server, psutil.Process(int(server.stdout.readline()))


def ended(child: psutil.Process) -> bool:
    return not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_server_that_exits_normally_ends_its_children_at_once() -> None:
    server, child = exiting_server()
    started = time.monotonic()
    server.communicate("exit\n", timeout=30)
    assert server.returncode == 0
    assert ended(child) and time.monotonic() - started < 5  # terminated, not left to run its minute


def test_a_server_stopped_by_sigterm_ends_its_children_at_once() -> None:
    # uvicorn ends the server on SIGTERM by raising the signal again, which skips atexit.
    server, child = exiting_server()
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == -signal.SIGTERM  # ended by the signal, as without the wrapper
    assert ended(child) and time.monotonic() - started < 5
