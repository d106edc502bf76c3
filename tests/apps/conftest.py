"""A real ``monailabel start_server --app apps/tumor`` process on a loopback port, with synthetic studies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from monailabel.client import MONAILabelClient

from tests.synthetic import SyntheticCase, write_case

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONAILABEL = os.path.join(os.path.dirname(sys.executable), "monailabel")
# Small enough that a training epoch takes seconds on 2 CPU cores.
TINY = {
    "features": "8",
    "patch_size": "16,16,8",
    "spacing": "1.6,1.6,3.3",
    "samples_per_case": "2",
    "mc_samples": "2",
    "device": "cpu",
    "cache_cases": "2",
}


@dataclass
class Server:
    """A running server and what the tests need to inspect it."""

    client: MONAILabelClient
    url: str
    studies: str
    model_dir: str
    cases: dict[str, SyntheticCase]
    process: subprocess.Popen
    log_path: str

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-5000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(studies: str, conf: dict[str, str], log_path: str) -> tuple[subprocess.Popen, str]:
    """Start the server as 3D Slicer users do; any attempt to reach the internet fails fast (dead proxy)."""
    port = free_port()
    cmd = [
        MONAILABEL,
        "start_server",
        "--app",
        os.path.join(ROOT, "apps", "tumor"),
        "--studies",
        studies,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    for key, value in conf.items():
        cmd += ["--conf", key, value]
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
    }
    log = open(log_path, "w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(process: subprocess.Popen, url: str, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            if requests.get(f"{url}/info/", timeout=5).status_code == 200:
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Four synthetic oblique, anisotropic cases, none labelled, and a tiny model."""
    root = tmp_path_factory.mktemp("server")
    studies, model_dir, truth = str(root / "studies"), str(root / "model"), str(root / "truth")
    cases = {f"case{i}": write_case(studies, f"case{i}", seed=i, label_folder=truth) for i in range(4)}
    os.makedirs(root / "client")
    process, url = start_server(studies, {**TINY, "model_dir": model_dir}, str(root / "server.log"))
    try:
        wait_until_up(process, url)
        yield Server(
            MONAILabelClient(url, tmpdir=str(root / "client")),
            url,
            studies,
            model_dir,
            cases,
            process,
            str(root / "server.log"),
        )
    finally:
        stop_server(process)
