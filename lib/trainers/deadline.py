"""End a network's training after the last epoch that fits before a deadline."""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

from lib.trainers.distributed import any_process

logger = logging.getLogger(__name__)

PREDICTING_EPOCHS = 3  # the slowest of the last epochs predicts the next one's length


class StopBeforeDeadline:
    """Terminates the trainer after an epoch when one more, as long as the slowest of the last
    ``PREDICTING_EPOCHS``, would end past ``deadline``; at least one epoch runs. Only recent epochs predict the
    next, so one epoch slowed by a job that shared the CPU for a while does not end training early. In a
    distributed run every process stops after the epoch in which any of them would pass the deadline.

    Args:
        deadline: ``time.time()`` by which training must end.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.epoch_start = time.time()
        self.epoch_seconds: list[float] = []
        self.stopped = False  # whether the deadline ended training before its last epoch

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.EPOCH_STARTED, self._started)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._completed)

    def _started(self, trainer: Engine) -> None:
        self.epoch_start = time.time()

    def _completed(self, trainer: Engine) -> None:
        now = time.time()
        self.epoch_seconds.append(now - self.epoch_start)
        more = trainer.state.epoch < trainer.state.max_epochs
        if more and any_process(now + max(self.epoch_seconds[-PREDICTING_EPOCHS:]) > self.deadline):
            logger.info(
                "Stopping after epoch %d of %d: the next would pass the time budget",
                trainer.state.epoch,
                trainer.state.max_epochs,
            )
            self.stopped = True
            trainer.terminate()
