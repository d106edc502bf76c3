"""Background jobs start at a lower CPU priority, and keep their pid (so Stop kills the job itself)."""

from __future__ import annotations

import os
import sys

import pytest
from monailabel.utils.async_tasks import utils

from lib.priority import nice_background_jobs, niced

SCRIPT = "import os, threading; print(os.getpid(), os.getpriority(os.PRIO_PROCESS, 0))"


def test_niced_popen_starts_the_command_nicer_in_the_same_process() -> None:
    process = niced(5).Popen([sys.executable, "-c", SCRIPT], stdout=niced(5).PIPE, universal_newlines=True)
    out, _ = process.communicate(timeout=60)
    pid, niceness = map(int, out.split())
    assert pid == process.pid  # nice execs the job: killing process.pid kills the job
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)


@pytest.mark.parametrize(("niceness", "replaced"), [(10, True), (0, False)])
def test_the_server_starts_monai_labels_jobs_niced(niceness: int, replaced: bool, monkeypatch) -> None:
    monkeypatch.setattr(utils, "subprocess", utils.subprocess)  # restored after the test
    stock = utils.subprocess
    nice_background_jobs(niceness)
    assert (utils.subprocess is not stock) == replaced
    process = utils.subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=utils.subprocess.PIPE, text=True)
    assert int(process.communicate(timeout=60)[0].split()[1]) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
