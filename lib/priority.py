"""Lower CPU priority for the server's background jobs (training, scoring), so an annotator's requests come first.

Linux applies niceness per thread, and threads started later (PyTorch's intra-op pool) inherit it from the thread
that starts them; so :func:`lower_priority` renices every thread of the process, once, before the job's work.
Niceness cannot be lowered back without privileges: only processes that run nothing but the job call it.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

LOW_PRIORITY = "low_priority"  # scoring request key: lower this process's CPU priority before scoring
# MONAI Label runs /train and Auto-Update in a process of their own (``monailabel.interfaces.utils.app -m train``),
# which adds this key to the training request; a run inside the server (``run_sync``) or a script has none.
BACKGROUND_TRAINING = "local_rank"


def lower_priority(increment: int) -> None:
    """Raise the niceness of every thread of this process by ``increment`` (at most to 19)."""
    tasks = "/proc/self/task"
    threads = [int(t) for t in os.listdir(tasks)] if os.path.isdir(tasks) else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except OSError as e:  # a thread that just ended
            logger.debug("Could not lower the priority of thread %d: %s", tid, e)
