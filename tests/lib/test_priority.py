"""Lower CPU priority of background jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_lower_priority_renices_every_thread_of_the_process() -> None:
    # In a child process: the test process itself keeps its priority.
    script = (
        "import os, threading, time\n"
        "from lib.priority import lower_priority\n"
        "ready, done = threading.Event(), threading.Event()\n"
        "threading.Thread(target=lambda: (ready.set(), done.wait())).start()\n"
        "ready.wait()\n"
        "before = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "lower_priority(10)\n"
        "nices = {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}\n"
        "done.set()\n"
        "print(before, 10, sorted(nices))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    before, increment, nices = out.stdout.split(maxsplit=2)
    assert nices.strip() == f"[{min(19, int(before) + int(increment))}]"  # both threads, one value
