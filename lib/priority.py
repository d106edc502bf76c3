"""The server's background jobs (training runs, scoring) run at a lower CPU priority from their first instruction.

MONAI Label starts each job as a process of its own (``python -m monailabel.interfaces.utils.app -m train``);
importing PyTorch and starting the app takes seconds of CPU before the job's work begins, and a job that lowered
its own priority only then slowed the annotators' requests during those seconds (the first auto segmentations
after start-up took 2.5-2.9 s instead of 0.35 s while the start-up scoring job started). So the server starts
these processes through ``nice``, which execs the job in the same process: the job's pid, its kill by
``DELETE /train/`` and its threads (which inherit the niceness) are as before.
"""

from __future__ import annotations

import logging
import subprocess
from types import SimpleNamespace
from typing import Any

logger = logging.getLogger(__name__)


def niced(niceness: int) -> SimpleNamespace:
    """A stand-in for the ``subprocess`` module whose ``Popen`` starts commands ``niceness`` steps nicer."""

    def popen(command: list[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(["nice", "-n", str(niceness), *command], **kwargs)

    return SimpleNamespace(Popen=popen, PIPE=subprocess.PIPE, STDOUT=subprocess.STDOUT)


def nice_background_jobs(niceness: int) -> None:
    """Start MONAI Label's background jobs (training, scoring) ``niceness`` steps nicer than the server.

    Call once in the server process; 0 leaves them at the server's priority.
    """
    from monailabel.utils.async_tasks import utils

    if niceness:
        utils.subprocess = niced(niceness)  # the module's only use of subprocess is Popen of a job
        logger.info("Background jobs start at niceness +%d", niceness)
