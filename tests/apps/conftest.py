"""A real ``monailabel start_server --app apps/tumor`` process on a loopback port, with synthetic studies."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from monailabel.client import MONAILabelClient

from tests.support.server import APP, start_server, stop_server, wait_until_up
from tests.synthetic import SyntheticCase, write_case

# Small enough that a training epoch takes seconds on 2 CPU cores.
TINY = {
    "augmentation": "flips",  # tests that check learning were tuned with flips only
    "features": "8",
    "patch_size": "16,16,8",
    "spacing": "1.6,1.6,3.3",
    "samples_per_case": "2",
    "mc_samples": "2",
    "device": "cpu",
    "cache_cases": "2",
    "click_epochs": "2",
    "click_rounds": "1",
    "checkpoint": "none",  # start untrained whatever model the app ships
}


def failed_startup(
    studies: str, conf: dict[str, str], log_path: str, host: str = "127.0.0.1", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Start a server that is expected to stop at start-up: its exit status and its log."""
    process, _ = start_server(APP, studies, conf, log_path, host=host, env=env)
    try:
        process.wait(120)
    finally:
        stop_server(process)
    with open(log_path, errors="replace") as f:
        return process.returncode, f.read()


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Four synthetic oblique, anisotropic cases, none labelled, and a tiny model."""
    root = tmp_path_factory.mktemp("server")
    studies, model_dir, truth = str(root / "studies"), str(root / "model"), str(root / "truth")
    cases = {f"case{i}": write_case(studies, f"case{i}", seed=i, label_folder=truth) for i in range(4)}
    os.makedirs(root / "client")
    process, url = start_server(APP, studies, {**TINY, "model_dir": model_dir}, str(root / "server.log"))
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
