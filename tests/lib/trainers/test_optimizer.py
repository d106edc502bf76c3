"""The training optimiser skips updates with non-finite gradients and otherwise is AdamW."""

from __future__ import annotations

import pytest
import torch

from lib.trainers.optimizer import FiniteAdamW


def step_with(gradient: float) -> tuple[torch.Tensor, FiniteAdamW]:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = FiniteAdamW([weight], lr=0.1)
    weight.grad = torch.tensor([1.0, gradient, 1.0])
    optimizer.step()
    return weight.detach(), optimizer


@pytest.mark.parametrize("gradient", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_leaves_weights_and_moments_unchanged(
    gradient: float, caplog: pytest.LogCaptureFixture
) -> None:
    weight, optimizer = step_with(gradient)
    assert torch.equal(weight, torch.ones(3))
    assert optimizer.skipped == 1 and not optimizer.state  # no moment was updated either
    assert "Training step skipped: a gradient is not finite (1 skipped in this run)" in caplog.text


def test_finite_gradients_step_exactly_as_adamw() -> None:
    weight, optimizer = step_with(2.0)
    reference = torch.nn.Parameter(torch.ones(3))
    adamw = torch.optim.AdamW([reference], lr=0.1)
    reference.grad = torch.tensor([1.0, 2.0, 1.0])
    adamw.step()
    assert optimizer.skipped == 0
    assert torch.equal(weight, reference.detach()) and not torch.equal(weight, torch.ones(3))
