"""One server per folder: a second holder is refused, and a killed holder leaves nothing stale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.config import ConfigError
from lib.server.exclusive import LOCK_FILE, hold

HOLDER = """
import sys, time
from lib.server.exclusive import hold
hold(sys.argv[1], "--conf model_dir", 8123)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path):
    """Another process holding ``tmp_path``, as a running server does."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_folder_held_by_another_server_is_refused_with_its_owner(tmp_path: Path, holder) -> None:
    with pytest.raises(ConfigError) as refused:
        hold(str(tmp_path), "--conf model_dir", 8000)
    message = str(refused.value)
    assert message.startswith(f"--conf model_dir {tmp_path} is in use by another running server (process {holder.pid}")
    assert message.endswith("port 8123); stop it, or give this server its own folder")


def test_a_second_worker_of_one_server_is_told_to_use_one_worker(tmp_path: Path, holder) -> None:
    """start_server --workers 2: each worker process would be a server of its own, with its own image list."""
    with pytest.raises(ConfigError, match=r"in use by another worker of this server \(process \d+ on .*, port 8123\)"):
        hold(str(tmp_path), "--conf model_dir", 8123)


def test_a_killed_server_leaves_no_stale_lock(tmp_path: Path, holder) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert os.path.exists(tmp_path / LOCK_FILE)  # the file stays; the OS lock went with the process
    deadline = time.monotonic() + 10
    while True:
        try:
            assert hold(str(tmp_path), "--conf model_dir", 8000)
            break
        except ConfigError:
            assert time.monotonic() < deadline, "the lock outlived its process"
            time.sleep(0.1)


def test_a_folder_that_cannot_take_a_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writable folder must take the lock; a read-only studies share starts with a warning."""
    (tmp_path / LOCK_FILE).mkdir()  # opening the lock file fails, also for root
    for what, required in (("--conf model_dir", True), ("the studies folder", False)):
        with pytest.raises(ConfigError, match=f"^{what} {tmp_path} cannot be locked for this server: "):
            hold(str(tmp_path), what, 8000, required=required)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as on a read-only share (root writes anywhere else)
    assert hold(str(tmp_path), "the studies folder", 8000, required=False) is False
    assert "cannot be locked" in caplog.text
    with pytest.raises(ConfigError, match="cannot be locked for this server"):
        hold(str(tmp_path), "--conf model_dir", 8000)
