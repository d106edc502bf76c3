"""Training requests of several annotators: one run at a time, and at most one pending behind it.

A Train request while a run is going replaces the pending one (the newest request carries the newest labels, and
a run trains on every label present when it starts); Stop stops the running run and drops the pending one. Runs
go through MONAI Label's background tasks (one process per run, ``GET /train/`` reports them), so status and
3D Slicer's "Auto-Update" (Stop, then Train) work as with stock MONAI Label.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psutil
from monailabel.utils.async_tasks.utils import processes, run_background_task, stop_background_task, tasks

from lib.atomic import remove_stale_temporaries
from lib.trainers.run_stats import settle_stats

logger = logging.getLogger(__name__)

TRAIN = "train"
PENDING = "PENDING"
EXIT_WAIT_S = 10.0  # how long Stop waits for a killed run's process to exit before settling its stats
START_WAIT_S = 10.0  # how long Stop waits for a run submitted a moment ago to start its process, to kill it


def _task(request: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "request": request,
        "start_ts": datetime.today().strftime("%Y-%m-%d %H:%M:%S"),
    }


def _wait_for_process(task: dict[str, Any]) -> None:
    """Wait until MONAI Label's task thread has started the process of ``task``, submitted but not yet started (on
    a busy machine that takes a moment), or ``START_WAIT_S`` has passed."""
    deadline = time.time() + START_WAIT_S
    while task["id"] not in processes(TRAIN) and task["status"] == "SUBMITTED" and time.time() < deadline:
        time.sleep(0.05)


def _children(pid: int) -> list[psutil.Process]:
    """The processes ``pid`` started, and theirs; none when it has already exited."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class TrainQueue:
    """The running training run and the pending request.

    Args:
        stats_path: the runs' stats file, rewritten as STOPPED when Stop ends a run.
        outputs: the files a run replaces (weights); a run killed by Stop while writing them leaves temporary files
            beside them, which Stop removes once the run's process has exited. A run ends with the server that
            started it, possibly mid-write too, so the queue of a new server removes what such a run left.
    """

    def __init__(self, stats_path: str, outputs: Sequence[str] = ()) -> None:
        self.stats_path = stats_path
        self.outputs = (*outputs, stats_path)
        started = time.time()
        for path in self.outputs:
            for tmp in remove_stale_temporaries(path, started):
                logger.info("Removed %s, left by a training run of an earlier server", tmp)
        self._lock = threading.Lock()
        self._current: dict[str, Any] | None = None  # the task of the run started last
        self._pending: dict[str, Any] | None = None

    def _running(self) -> bool:
        return self._current is not None and self._current["status"] in ("SUBMITTED", "RUNNING")

    def _start(self, request: dict[str, Any]) -> dict[str, Any]:
        self._current = run_background_task(request, TRAIN, callback=self._finished)
        return self._current

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a run now, or make ``request`` the pending one when a run is going. Returns its task."""
        with self._lock:
            # A pending request means a run is ending: its callback starts the pending one, so this replaces it.
            if not self._running() and self._pending is None:
                return dict(self._start(request))
            if self._pending is not None:
                logger.info("Train request %s replaces pending request %s", request, self._pending["request"])
            self._pending = _task(request, PENDING)
            return dict(self._pending)

    def _finished(self, task: dict[str, Any]) -> None:
        """Called by MONAI Label's task thread when a run's process has ended: start the pending request."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None and task is self._current:
                logger.info("Starting the pending train request %s", pending["request"])
                self._start(pending["request"])

    def pending(self) -> dict[str, Any] | None:
        """The pending request's task, if any."""
        with self._lock:
            return dict(self._pending) if self._pending else None

    def status(self, all_tasks: bool = False, check_if_running: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """``GET /train/``: MONAI Label's reply, and the pending request, which MONAI Label does not know.

        Args:
            all_tasks: every run of this server, oldest first, then the pending request; else the latest run, with
                the pending request under ``pending``.
            check_if_running: the running run only (what 3D Slicer polls).

        Raises:
            LookupError: nothing to report (no run yet; with ``check_if_running``, none running).
        """
        with self._lock:
            pending = dict(self._pending) if self._pending else None
        if check_if_running:
            running = next(iter(processes(TRAIN)), None)
            found = [dict(t) for t in tasks(TRAIN) if t["id"] == running]
            if not found:
                raise LookupError("no training run is running")
            return {**found[0], **({"pending": pending} if pending else {})}
        runs = [dict(t) for t in tasks(TRAIN)]
        if all_tasks:
            if not runs and pending is None:
                raise LookupError("no training run yet")
            return runs + ([pending] if pending else [])
        if not runs:
            raise LookupError("no training run yet")
        return {**runs[-1], **({"pending": pending} if pending else {})}

    def stop(self) -> dict[str, Any] | None:
        """Drop the pending request and stop the running run; its stats then say STOPPED. Returns the stopped
        task: the running one, with the dropped pending request under ``pending`` (as :meth:`status` shows it),
        else the pending one; None when there was nothing to stop."""
        requested = time.time()
        with self._lock:
            pending, self._pending = self._pending, None
            current = self._current
        if current is not None and current["status"] == "SUBMITTED":
            _wait_for_process(current)  # else the run would start after Stop, and run to its end
        with self._lock:
            running = next(iter(processes(TRAIN).values()), None)
            children = _children(running.pid) if running is not None else []  # a multi-GPU run's processes
            stopped = stop_background_task(TRAIN) if running is not None else None
        if running is not None:
            try:
                running.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                logger.warning("Training process %d has not exited %.0f s after being killed", running.pid, EXIT_WAIT_S)
            else:
                # The run's processes that have exited can write no more: their half-written files go, whenever
                # they were written (the files they were to replace stay), and so do older ones of any writer.
                exited, _ = psutil.wait_procs(children, timeout=EXIT_WAIT_S)
                writers = [running.pid, *(child.pid for child in exited)]
                for path in self.outputs:
                    for tmp in remove_stale_temporaries(path, requested, writers):
                        logger.info("Removed %s, left by the stopped training run", tmp)
        settle_stats(self.stats_path)
        dropped = {**pending, "status": "STOPPED"} if pending is not None else None
        if stopped is None:
            return dropped
        return {**stopped, **({"pending": dropped} if dropped else {})}
