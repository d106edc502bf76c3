"""An ensemble is one module whose output is the log of its members' mean softmax; only the segmentation network
is ensembled."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION
from lib.networks.ensemble import Ensemble, ensemble_members


class Constant(torch.nn.Module):
    """A 'network' whose tumour logit is a learnable ``logit`` everywhere, whatever the image."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(logit))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tumour = self.logit.expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([torch.zeros_like(tumour), tumour], dim=1)


def test_the_output_is_the_log_of_the_members_mean_softmax_and_trains_every_member() -> None:
    ensemble = Ensemble([Constant(4.0), Constant(-1.0)])
    output = ensemble(torch.zeros(1, 1, 2, 2, 2))
    # (sigmoid(4) + sigmoid(-1)) / 2 = (0.98201 + 0.26894) / 2 = 0.62548; averaging the logits would give 0.818
    torch.testing.assert_close(torch.softmax(output, 1)[0, 1], torch.full((2, 2, 2), 0.625476), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.exp(output).sum(1), torch.ones(1, 2, 2, 2))  # already log-probabilities
    output[:, 1].sum().backward()
    assert all(m.logit.grad is not None and m.logit.grad > 0 for m in ensemble.members)


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
