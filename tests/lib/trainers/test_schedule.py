"""Poly learning-rate decay over a run's epochs or its time budget."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from lib.trainers import schedule
from lib.trainers.schedule import PolyLearningRate


def run(scheduler_deadline: float | None, epochs: int, epoch_length: int, clock: list[float], step_s: float) -> list:
    """The learning rate each iteration trained with; every iteration advances ``clock`` by ``step_s``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    engine = Engine(lambda e, b: clock.__setitem__(0, clock[0] + step_s))
    PolyLearningRate(optimizer, scheduler_deadline).attach(engine)
    rates: list[float] = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda _: rates.append(optimizer.param_groups[0]["lr"]))
    engine.run(range(epoch_length), max_epochs=epochs)
    return rates


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(schedule.time, "time", lambda: now[0])
    return now


def test_without_a_deadline_the_rate_decays_over_the_iterations(clock: list[float]) -> None:
    rates = run(None, epochs=2, epoch_length=5, clock=clock, step_s=1.0)

    expected = [0.01 * (1 - i / 10) ** 0.9 for i in range(10)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(0.01) and rates[-1] < 0.0013  # from the initial rate to near zero


def test_a_time_budget_decays_the_rate_before_the_epochs_would(clock: list[float]) -> None:
    # 50 epochs planned, but the budget (40 s, 1 s an iteration) ends the run after 4 epochs of 10 iterations.
    rates = run(clock[0] + 40.0, epochs=50, epoch_length=10, clock=clock, step_s=1.0)[:40]

    assert rates[0] == pytest.approx(0.01)
    assert rates[20] == pytest.approx(0.01 * 0.5**0.9)  # half the budget used, 1/25 of the iterations
    assert rates[39] == pytest.approx(0.01 * (1 / 40) ** 0.9)
    assert all(a > b for a, b in zip(rates, rates[1:]))
