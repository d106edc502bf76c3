"""Learning-rate decay of one training run, by epochs or by its time budget."""

from __future__ import annotations

import time

import torch
from ignite.engine import Engine, Events

POLY_EXPONENT = 0.9  # nnU-Net's


class PolyLearningRate:
    """nnU-Net's poly decay, ``lr = initial (1 - progress) ** 0.9``, set before every iteration.

    ``progress`` is the larger of the share of the run's iterations done and the share of its time budget used
    (from its first iteration to ``deadline``), so a run that the budget ends after a few of its epochs also ends
    at a low rate. Each run starts again at the initial rate and continues from the previous run's final weights
    (warm restarts): the final weights, which the next round builds on and which are published when there are too
    few validation cases to choose by, come from the end of a decay, not from the middle of noisy steps.

    Args:
        optimizer: the run's optimizer; its current learning rate is the initial one.
        deadline: ``time.time()`` by which the run must end, or None (progress by iterations only).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, deadline: float | None = None) -> None:
        self.optimizer = optimizer
        self.initial = [group["lr"] for group in optimizer.param_groups]
        self.deadline = deadline
        self.start: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def progress(self, engine: Engine, now: float) -> float:
        iterations = (engine.state.iteration - 1) / (engine.state.max_epochs * (engine.state.epoch_length or 1))
        start = self.start if self.start is not None else now
        budget = (now - start) / (self.deadline - start) if self.deadline and self.deadline > start else 0.0
        return min(1.0, max(iterations, budget))

    def __call__(self, engine: Engine) -> None:
        now = time.time()
        self.start = now if self.start is None else self.start  # the budget is counted from the first iteration
        factor = (1.0 - self.progress(engine, now)) ** POLY_EXPONENT
        for group, initial in zip(self.optimizer.param_groups, self.initial):
            group["lr"] = initial * factor
