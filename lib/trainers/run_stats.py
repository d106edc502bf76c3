"""The stats of a training run, as ``/info`` shows them to 3D Slicer (``train_stats``).

One file, ``<model_dir>/train_stats.json``, written atomically by the run after every epoch of either network.
3D Slicer draws ``epoch / total_epochs`` (both networks together, so the bar moves once from 0 to 100%) and
``best_metric`` (the segmentation network's validation Dice); it shows ~0% whenever ``total_time`` is present, so
that key is written only when the run has finished. A file that says RUNNING while no process of this server runs
the run (stopped, crashed, left by an earlier server) is read, and rewritten, as STOPPED.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from typing import Any

import psutil
from monailabel.utils.async_tasks.utils import processes

from lib.atomic import write_json

logger = logging.getLogger(__name__)

STATS_FILE = "train_stats.json"
RUNNING, DONE, STOPPED = "RUNNING", "DONE", "STOPPED"


def stats_path(model_dir: str) -> str:
    """The run stats file of a model folder."""
    return os.path.join(model_dir, STATS_FILE)


def _elapsed(start: float) -> str:
    return str(datetime.timedelta(seconds=int(time.time() - start)))


class RunStats:
    """Writes the stats of one run.

    Args:
        path: the stats file.
        run_id: the run's identifier.
        planned: the most epochs of each network, in training order.
        replay_cases: cases of ``replay_studies`` the run trains on beside its own.
    """

    def __init__(self, path: str, run_id: str, planned: dict[str, int], replay_cases: int = 0) -> None:
        self.path = path
        self.run_id = run_id
        self.replay_cases = replay_cases
        self.start = time.time()
        self.planned = dict(planned)
        self.networks: dict[str, dict[str, Any]] = {}  # name -> the network's summary once it has started
        self.best_metric: float | None = None

    def update(self, network: str, summary: dict[str, Any], stopped_by_time_budget: bool) -> None:
        """Record a network's progress; a network the budget ended early plans no more epochs than it ran."""
        self.networks[network] = {**summary, "stopped_by_time_budget": stopped_by_time_budget}
        if stopped_by_time_budget:
            self.planned[network] = summary["epoch"]
        if network == next(iter(self.planned)):
            self.best_metric = summary.get("best_metric")

    def published(self, network: str, held_back: str | None) -> None:
        """Record whether the run replaced a network's served weights, and why not (``lib.trainers.run.held_back``)."""
        self.networks[network]["published"] = held_back is None
        if held_back is not None:
            self.networks[network]["held_back"] = held_back

    def document(self, status: str) -> dict[str, Any]:
        """The stats document: run-level progress for 3D Slicer, and each network's own figures."""
        epochs = sum(n["epoch"] for n in self.networks.values())
        stats: dict[str, Any] = {
            "status": status,
            "run_id": self.run_id,
            "pid": os.getpid(),
            "niceness": os.getpriority(os.PRIO_PROCESS, 0),
            "start_ts": int(self.start),
            "epoch": epochs,
            "total_epochs": sum(self.planned.values()),
            "best_metric": self.best_metric or 0.0,
            "replay_cases": self.replay_cases,
            "networks": self.networks,
        }
        stats["total_time" if status == DONE else "current_time"] = _elapsed(self.start)
        return stats

    def write(self, status: str) -> None:
        write_json(self.path, self.document(status))


def _running(pid: int) -> bool:
    """Whether ``pid`` is a training process this server started and has not stopped.

    ``DELETE /train/`` removes the run from the server's registry at once, while the killed process may take a
    moment to exit; after a server restart the registry is empty, so a run the old server left behind is stopped.
    """
    if not any(process.pid == pid for process in processes("train").values()):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def read_stats(path: str) -> dict[str, Any]:
    """The run's stats; a RUNNING run whose process is gone is reported as STOPPED. Empty before any run."""
    try:
        with open(path) as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return {}
    if stats.get("status") == RUNNING and not _running(int(stats.get("pid", -1))):
        stats["status"] = STOPPED
    return stats


def settle_stats(path: str) -> None:
    """Rewrite a stats file that says RUNNING as STOPPED when no process of this server runs the run."""
    stats = read_stats(path)
    if stats.get("status") == STOPPED:
        try:
            with open(path) as f:
                on_disk = json.load(f).get("status")
        except (OSError, ValueError):
            return
        if on_disk == RUNNING:
            write_json(path, stats)
            logger.info("Run %s marked as stopped", stats.get("run_id"))
