"""One training run at a time, at most one pending: a new request replaces the pending one, Stop drops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lib.atomic import remove_stale_temporaries, write_temporary
from lib.server import train_queue
from lib.server.train_queue import TrainQueue


class FakeTasks:
    """MONAI Label's background tasks, without processes: runs start RUNNING and end when the test says."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.callbacks: dict[str, Any] = {}

    def run(self, request: dict[str, Any], method: str, callback: Any = None) -> dict[str, Any]:
        task = {"id": f"run{len(self.started)}", "status": "RUNNING", "request": request}
        self.started.append(task)
        self.callbacks[task["id"]] = callback
        return task

    def finish(self, task: dict[str, Any], status: str = "DONE") -> None:
        task["status"] = status
        self.callbacks[task["id"]](task)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> FakeTasks:
    fake = FakeTasks()
    monkeypatch.setattr(train_queue, "run_background_task", fake.run)
    monkeypatch.setattr(train_queue, "processes", lambda method: {})
    monkeypatch.setattr(train_queue, "tasks", lambda method: fake.started)
    return fake


def test_the_status_shows_the_pending_request_beside_the_run(
    tasks: FakeTasks, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = TrainQueue(str(tmp_path / "train_stats.json"))
    with pytest.raises(LookupError, match="no training run yet"):
        queue.status()
    first = queue.submit({"max_epochs": 5})
    pending = queue.submit({"max_epochs": 1})

    latest = queue.status()
    assert latest["id"] == first["id"] and latest["status"] == "RUNNING"
    assert latest["pending"]["id"] == pending["id"] and latest["pending"]["status"] == "PENDING"
    assert [t["id"] for t in queue.status(all_tasks=True)] == [first["id"], pending["id"]]
    monkeypatch.setattr(train_queue, "processes", lambda method: {first["id"]: object()})
    assert queue.status(check_if_running=True)["pending"]["id"] == pending["id"]

    tasks.finish(tasks.started[0])  # the pending request starts
    latest = queue.status()
    assert latest["request"] == {"max_epochs": 1} and "pending" not in latest
    monkeypatch.setattr(train_queue, "processes", lambda method: {})
    with pytest.raises(LookupError, match="no training run is running"):
        queue.status(check_if_running=True)


def test_a_request_while_a_run_is_going_waits_and_the_newest_replaces_the_pending(tasks: FakeTasks, tmp_path) -> None:
    queue = TrainQueue(str(tmp_path / "train_stats.json"))
    first = queue.submit({"max_epochs": 5})
    second = queue.submit({"max_epochs": 1})
    third = queue.submit({"max_epochs": 2})

    assert first["status"] == "RUNNING" and second["status"] == third["status"] == "PENDING"
    assert [t["request"] for t in tasks.started] == [{"max_epochs": 5}]
    assert queue.pending()["id"] == third["id"]

    tasks.finish(tasks.started[0])  # the run ends: the pending request (the third) starts, the second never runs
    assert [t["request"] for t in tasks.started] == [{"max_epochs": 5}, {"max_epochs": 2}]
    assert queue.pending() is None

    tasks.finish(tasks.started[1])
    assert len(tasks.started) == 2  # nothing more to start
    assert queue.submit({"max_epochs": 3})["status"] == "RUNNING"  # idle again: starts at once


def test_a_request_between_a_runs_end_and_its_callback_replaces_the_pending(tasks: FakeTasks, tmp_path) -> None:
    queue = TrainQueue(str(tmp_path / "train_stats.json"))
    queue.submit({"max_epochs": 5})
    queue.submit({"max_epochs": 1})
    tasks.started[0]["status"] = "DONE"  # the process has ended; MONAI Label has not called back yet
    assert queue.submit({"max_epochs": 2})["status"] == "PENDING"
    tasks.callbacks["run0"](tasks.started[0])
    assert [t["request"] for t in tasks.started] == [{"max_epochs": 5}, {"max_epochs": 2}]


def test_stop_drops_the_pending_request_and_settles_the_stats(tasks: FakeTasks, tmp_path, monkeypatch) -> None:
    stats = tmp_path / "train_stats.json"
    stats.write_text(json.dumps({"status": "RUNNING", "pid": 999999, "run_id": "r"}))
    queue = TrainQueue(str(stats))
    queue.submit({"max_epochs": 5})
    pending = queue.submit({"max_epochs": 1})

    stopped = queue.stop()  # no process registered (the fake's): the pending request is what was stopped

    assert stopped["id"] == pending["id"] and stopped["status"] == "STOPPED"
    assert queue.pending() is None
    assert json.loads(Path(stats).read_text())["status"] == "STOPPED"  # no process runs that run any more
    tasks.finish(tasks.started[0], "STOPPED")
    assert len(tasks.started) == 1  # the dropped request never starts


def test_stop_of_a_run_and_a_pending_request_reports_both(tasks: FakeTasks, tmp_path, monkeypatch) -> None:
    """The annotator who pressed Train while a run was going learns that their request was dropped too."""
    queue = TrainQueue(str(tmp_path / "train_stats.json"))
    running = queue.submit({"max_epochs": 5})
    pending = queue.submit({"max_epochs": 1})
    run = subprocess.Popen([sys.executable, "-c", "pass"])
    monkeypatch.setattr(train_queue, "processes", lambda method: {running["id"]: run})
    monkeypatch.setattr(train_queue, "stop_background_task", lambda method: {**running, "status": "STOPPED"})

    stopped = queue.stop()

    assert stopped["id"] == running["id"] and stopped["status"] == "STOPPED"
    assert stopped["pending"]["id"] == pending["id"] and stopped["pending"]["status"] == "STOPPED"
    assert stopped["pending"]["request"] == {"max_epochs": 1} and queue.pending() is None


def test_stop_right_after_train_stops_the_run_whose_process_is_still_starting(tmp_path, monkeypatch) -> None:
    """MONAI Label's task thread starts a run's process a moment after Train answers; Stop in between must wait
    for it and kill it, not leave it to run to its end."""
    registered: dict[str, Any] = {}
    task = {"id": "run0", "status": "SUBMITTED", "request": {}}
    killed: list[str] = []

    def start_later() -> None:
        time.sleep(0.5)
        registered["run0"] = subprocess.Popen([sys.executable, "-c", "pass"])
        task["status"] = "RUNNING"

    def kill(method: str) -> dict[str, Any] | None:
        if not registered:
            return None
        killed.append(next(iter(registered)))
        registered.clear()
        return {**task, "status": "STOPPED"}

    monkeypatch.setattr(train_queue, "run_background_task", lambda request, method, callback=None: task)
    monkeypatch.setattr(train_queue, "processes", lambda method: registered)
    monkeypatch.setattr(train_queue, "stop_background_task", kill)
    queue = TrainQueue(str(tmp_path / "train_stats.json"))
    assert queue.submit({"max_epochs": 500})["status"] == "SUBMITTED"
    threading.Thread(target=start_later).start()

    stopped = queue.stop()

    assert killed == ["run0"] and stopped["id"] == "run0" and stopped["status"] == "STOPPED"


def test_stop_removes_what_the_killed_run_half_wrote_and_nothing_else(tasks: FakeTasks, tmp_path, monkeypatch) -> None:
    weights = tmp_path / "segmentation.pt"
    weights.write_bytes(b"served")
    queue = TrainQueue(str(tmp_path / "train_stats.json"), [str(weights)])
    half_written = tmp_path / ".segmentation.pt.k3x_9q.tmp"  # older than the Stop request: stale, whoever wrote it
    half_written.write_bytes(b"half")
    later = tmp_path / ".segmentation.pt.z1.tmp"  # written after Stop was asked (an admin's upload): not the run's
    later.write_bytes(b"upload")
    os.utime(later, (time.time() + 60, time.time() + 60))
    other = tmp_path / ".users.json.a1.tmp"  # another file's temporary: not a run's output
    other.write_text("{}")
    run = subprocess.Popen([sys.executable, "-c", "pass"])  # the run's process, which has exited when Stop waits
    # What the run itself was writing when it was killed, after Stop was asked (on a busy machine the kill comes
    # later): named with its process id, as lib.atomic.write_temporary names every temporary file.
    its_own = tmp_path / f".segmentation.pt.{run.pid}.x7q2.tmp"
    its_own.write_bytes(b"half")
    os.utime(its_own, (time.time() + 60, time.time() + 60))
    monkeypatch.setattr(train_queue, "processes", lambda method: {"run": run})
    monkeypatch.setattr(train_queue, "stop_background_task", lambda method: {"id": "run", "status": "STOPPED"})

    assert queue.stop() == {"id": "run", "status": "STOPPED"}
    assert not half_written.exists() and not its_own.exists()
    assert later.exists() and other.exists() and weights.read_bytes() == b"served"


def test_temporary_files_are_named_with_their_writers_process_id(tmp_path) -> None:
    target = tmp_path / "segmentation.pt"

    tmp = write_temporary(str(target), lambda f: f.write(b"weights"), binary=True)

    assert os.path.basename(tmp).startswith(f".segmentation.pt.{os.getpid()}.") and tmp.endswith(".tmp")
    os.utime(tmp, (time.time() + 60, time.time() + 60))  # written after any "before": removed as its writer's
    assert remove_stale_temporaries(str(target), time.time(), [os.getpid() + 1]) == []
    assert remove_stale_temporaries(str(target), time.time(), [os.getpid()]) == [tmp] and not os.path.exists(tmp)


def test_a_new_server_removes_what_a_run_of_the_previous_one_half_wrote(tmp_path) -> None:
    """A run ends with its server (lib.server.lifeline), possibly in the middle of writing its stats or weights."""
    weights, stats = tmp_path / "segmentation.pt", tmp_path / "train_stats.json"
    weights.write_bytes(b"served")
    stats.write_text('{"status": "RUNNING"}')
    left = [tmp_path / ".segmentation.pt.k3x_9q.tmp", tmp_path / ".train_stats.json.jd535xes.tmp"]
    for path in left:
        path.write_bytes(b"half")
    other = tmp_path / ".users.json.a1.tmp"  # another file's temporary: not a run's output
    other.write_text("{}")

    TrainQueue(str(stats), [str(weights)])

    assert not any(path.exists() for path in left)
    assert other.exists() and weights.read_bytes() == b"served" and stats.read_text() == '{"status": "RUNNING"}'
