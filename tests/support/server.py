"""A real ``monailabel start_server`` process on a loopback port, for the integration tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(ROOT, "apps", "tumor")
STOCK_APP = os.path.join(sys.prefix, "monailabel", "sample-apps", "radiology")  # the installed radiology sample
MONAILABEL = os.path.join(os.path.dirname(sys.executable), "monailabel")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    app: str,
    studies: str,
    conf: dict[str, str],
    log_path: str,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, str]:
    """Start the server for ``app`` as 3D Slicer users do; any attempt to reach the internet fails fast (dead proxy).

    Args:
        host: the address to listen on; the returned URL is always the loopback one.
        env: extra environment variables of the server process (e.g. its ``TMPDIR``).
        args: extra ``start_server`` arguments; with ``--ssl_certfile`` the URL is ``https``.
    """
    port = free_port()
    cmd = [
        MONAILABEL,
        "start_server",
        "--app",
        app,
        "--studies",
        studies,
        "--host",
        host,
        "--port",
        str(port),
    ]
    for key, value in conf.items():
        cmd += ["--conf", key, value]
    cmd += list(args)
    env = {
        **os.environ,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "127.0.0.1,localhost",
        "NO_PROXY": "127.0.0.1,localhost",
        "MONAI_LABEL_SERVER_PORT": str(port),
        "OMP_NUM_THREADS": "2",
        **(env or {}),
    }
    log = open(log_path, "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    scheme = "https" if "--ssl_certfile" in args else "http"
    return process, f"{scheme}://127.0.0.1:{port}"


def wait_until_up(process: subprocess.Popen, url: str, deadline_s: float = 180) -> None:
    """Wait until the server answers ``/info/`` (200, or 401 when login is on)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            # Any certificate will do here (a test's self-signed one): this only asks whether the server is up.
            if requests.get(f"{url}/info/", timeout=5, verify=False).status_code in (200, 401):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server at {url} did not answer within {deadline_s} s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
