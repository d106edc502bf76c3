"""An ensemble is one module whose output is the log of its members' mean softmax, and whose members train each on
its own loss; only the segmentation network is ensembled."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION
from lib.networks.ensemble import Ensemble, MemberLoss, ensemble_members, mean_log_softmax


class Constant(torch.nn.Module):
    """A 'network' whose tumour logit is a learnable ``logit`` everywhere, whatever the image."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(logit))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tumour = self.logit.expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([torch.zeros_like(tumour), tumour], dim=1)


def test_the_output_is_the_log_of_the_members_mean_softmax() -> None:
    ensemble = Ensemble([Constant(4.0), Constant(-1.0)]).eval()
    output = ensemble(torch.zeros(1, 1, 2, 2, 2))
    # (sigmoid(4) + sigmoid(-1)) / 2 = (0.98201 + 0.26894) / 2 = 0.62548; averaging the logits would give 0.818
    torch.testing.assert_close(torch.softmax(output, 1)[0, 1], torch.full((2, 2, 2), 0.625476), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.exp(output).sum(1), torch.ones(1, 2, 2, 2))  # already log-probabilities
    output[:, 1].sum().backward()
    assert all(m.logit.grad is not None and m.logit.grad > 0 for m in ensemble.members)


def test_in_training_each_member_learns_from_its_own_loss_not_from_the_average() -> None:
    ensemble = Ensemble([Constant(4.0), Constant(-1.0)]).train()
    x, target = torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)  # tumour everywhere
    output = ensemble(x)
    assert output.shape == (1, 4, 2, 2, 2)  # each member's background and tumour logits, side by side
    torch.testing.assert_close(mean_log_softmax(output, 2), ensemble.eval()(x))  # the same average as served

    loss = MemberLoss(torch.nn.CrossEntropyLoss(), members=2)
    loss(output, target[:, 0].long()).backward()
    # Member i's loss is -log sigmoid(l_i); the mean over 2 members gives each -(1 - sigmoid(l_i)) / 2:
    # -(1 - 0.982014) / 2 = -0.008993 and -(1 - 0.268941) / 2 = -0.365529, whatever the other member predicts.
    # (The loss of the average, -log 0.625478, would give the first member -0.982014 * 0.017986 / (2 * 0.625478) =
    # -0.014119: a confident member would be pushed on by the other's error.)
    grads = [m.logit.grad.item() for m in ensemble.members]
    assert grads == pytest.approx([-0.008993, -0.365529], abs=1e-6)
    single = torch.nn.CrossEntropyLoss()
    logits = torch.randn(2, 3, 4)
    assert MemberLoss(single, members=1)(logits, torch.zeros(2, 4).long()) == single(logits, torch.zeros(2, 4).long())


def test_an_ensemble_has_at_least_two_members() -> None:
    with pytest.raises(ValueError, match="at least 2 members, not 1"):
        Ensemble([Constant(0.0)])
    single = Constant(0.0)
    assert ensemble_members(single) == [single]


def test_the_plan_ensembles_the_segmentation_network_only(make_config: Callable[..., AppConfig]) -> None:
    config = make_config(ensemble="3", checkpoint="none")
    segmentation = build_network(config.plan)
    assert isinstance(segmentation, Ensemble) and len(segmentation.members) == 3
    first, second = (dict(m.named_parameters()) for m in segmentation.members[:2])
    assert any(not torch.equal(first[k], second[k]) for k in first)  # each member initialised on its own
    assert {k.split(".")[1] for k in segmentation.state_dict()} == {"0", "1", "2"}
    assert not isinstance(build_network(config.plan, CLICK_NETWORK), Ensemble)
    assert SEGMENTATION.architecture(config.plan)["ensemble"] == 3
    assert "ensemble" not in CLICK_NETWORK.architecture(config.plan)
    # a single network records nothing new, so checkpoints published before ensembles existed still load
    assert "ensemble" not in SEGMENTATION.architecture(make_config(checkpoint="none").plan)
    assert not isinstance(build_network(make_config(checkpoint="none").plan), Ensemble)
