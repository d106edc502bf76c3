"""Faults lose nothing: a killed server takes its training run with it, and start-up refuses an open network."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest
import requests

from tests.apps.conftest import TINY, failed_startup
from tests.apps.test_server import poll
from tests.support.server import APP, start_server, stop_server, wait_until_up
from tests.synthetic import write_case

pytestmark = pytest.mark.integration


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kill_9_of_the_server_ends_its_training_run_which_publishes_nothing(tmp_path) -> None:
    studies, model_dir = str(tmp_path / "studies"), str(tmp_path / "model")
    for i in range(3):  # labelled before the server starts: labels/final is read at start-up
        write_case(studies, f"case{i}", seed=i, label_folder=os.path.join(studies, "labels", "final"))
    conf = {**TINY, "model_dir": model_dir}
    process, url = start_server(APP, studies, conf, str(tmp_path / "server.log"))
    try:
        wait_until_up(process, url)
        assert requests.get(f"{url}/info/", timeout=30).json()["datastore"]["completed"] == 3
        requests.post(f"{url}/train/segmentation", json={"max_epochs": 500}, timeout=30).raise_for_status()

        def running() -> dict | None:
            stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"]["segmentation"]
            return stats if stats.get("status") == "RUNNING" and stats.get("epoch", 0) >= 1 else None

        pid = poll(running, "the training run's first epoch")["pid"]
        os.kill(process.pid, signal.SIGKILL)  # the server only, as the OOM killer or a power cut would
        process.wait(30)
        poll(lambda: gone(pid), "the training process to end", deadline_s=30, every_s=0.2)
    finally:
        stop_server(process)
    assert [f for f in os.listdir(model_dir) if f.endswith(".pt")] == []  # nothing published

    process, url = start_server(APP, studies, conf, str(tmp_path / "restart.log"))
    try:
        wait_until_up(process, url)
        # The run may have been ended mid-write (of its stats); the new server removed what it left half-written.
        assert [f for f in os.listdir(model_dir) if f.endswith(".tmp")] == []
        stats = requests.get(f"{url}/info/", timeout=30).json()["train_stats"]["segmentation"]
        assert stats["status"] == "STOPPED" and stats["pid"] == pid
        with open(os.path.join(model_dir, "train_stats.json")) as f:  # the restarted server settled the file
            assert json.load(f)["status"] == "STOPPED"
        assert requests.get(f"{url}/train/?check_if_running=true", timeout=30).status_code == 404
    finally:
        stop_server(process)


def test_listening_beyond_this_machine_needs_login_or_an_explicit_off(tmp_path) -> None:
    studies = str(tmp_path / "studies")
    write_case(studies, "case0", seed=0, label_folder=str(tmp_path / "truth"))
    status, log = failed_startup(studies, TINY, str(tmp_path / "refused.log"), host="0.0.0.0")
    assert status != 0
    assert "would listen on 0.0.0.0 without login" in log and "tumor-users --file users.json add" in log

    process, url = start_server(APP, studies, {**TINY, "auth": "off"}, str(tmp_path / "off.log"), host="0.0.0.0")
    try:
        wait_until_up(process, url)
        assert requests.get(f"{url}/auth/", timeout=30).json()["enabled"] is False
        assert requests.get(f"{url}/info/", timeout=30).status_code == 200
    finally:
        stop_server(process)
    assert "Login is OFF and the server listens on 0.0.0.0" in (tmp_path / "off.log").read_text(errors="replace")
