"""One factory builds the served, trained and Monte-Carlo dropout networks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn

from lib.config import AppConfig
from lib.networks import build_network, enable_mc_dropout

ConfigFactory = Callable[..., AppConfig]
NETWORKS = [
    pytest.param({"network": "segresnet", "patch_size": "16,16,8"}, id="segresnet"),
    # 32 along i keeps two voxels at the UNet's deepest (1/16) level, where instance norm needs more than one.
    pytest.param({"network": "unet", "features": "4", "patch_size": "32,16,16"}, id="unet"),
]


@pytest.mark.parametrize("conf", NETWORKS)
@pytest.mark.parametrize(("labels", "channels"), [("tumor", "1"), ("tumor,edema", "2")])
def test_output_has_one_channel_per_class(
    make_config: ConfigFactory, conf: dict[str, str], labels: str, channels: str
) -> None:
    config = make_config(**conf, labels=labels, channels=channels)
    network = build_network(config.plan).eval()

    with torch.no_grad():
        output = network(torch.randn(1, config.plan.channels, *config.patch_size))

    assert output.shape == (1, len(config.plan.labels) + 1, *config.patch_size)


@pytest.mark.parametrize("conf", NETWORKS)
def test_dropout_network_has_served_network_weights(make_config: ConfigFactory, conf: dict[str, str]) -> None:
    config = make_config(**conf)
    served = build_network(config.plan).state_dict()
    mc = build_network(config.plan, dropout=config.dropout)

    assert {k: v.shape for k, v in mc.state_dict().items()} == {k: v.shape for k, v in served.items()}
    mc.load_state_dict(served, strict=True)  # served weights load into the MC network


@pytest.mark.parametrize("conf", NETWORKS)
def test_mc_dropout_samples_while_eval_network_is_deterministic(
    make_config: ConfigFactory, conf: dict[str, str]
) -> None:
    config = make_config(**conf)
    torch.manual_seed(0)
    served = build_network(config.plan)
    mc = build_network(config.plan, dropout=config.dropout)
    mc.load_state_dict(served.state_dict())
    served.eval()
    enable_mc_dropout(mc)
    image = torch.randn(1, config.plan.channels, *config.patch_size)

    with torch.no_grad():
        assert torch.equal(served(image), served(image))
        assert not torch.allclose(mc(image), mc(image))

    dropouts = [m for m in mc.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert dropouts and all(m.training for m in dropouts)
    assert not any(m.training for m in mc.modules() if not isinstance(m, nn.modules.dropout._DropoutNd))


@pytest.mark.parametrize("conf", NETWORKS)
def test_served_network_has_no_dropout(make_config: ConfigFactory, conf: dict[str, str]) -> None:
    network = build_network(make_config(**conf).plan)
    assert not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in network.modules())


@pytest.mark.parametrize(
    "conf",
    [
        pytest.param({"network": "segresnet", "patch_size": "8,8,8"}, id="segresnet-8"),
        pytest.param({"network": "unet", "features": "4", "patch_size": "32,16,16"}, id="unet-32-16-16"),
    ],
)
def test_smallest_accepted_patch_runs_through_network(make_config: ConfigFactory, conf: dict[str, str]) -> None:
    # Whatever patch_size parse_config accepts must be usable for sliding-window inference and training.
    config = make_config(**conf)
    network = build_network(config.plan).eval()

    with torch.no_grad():
        output = network(torch.randn(1, config.plan.channels, *config.patch_size))

    assert output.shape == (1, config.plan.num_classes, *config.patch_size)


def test_unknown_network_is_refused(config: AppConfig) -> None:
    with pytest.raises(ValueError, match="unknown network 'vit'"):
        build_network(dataclasses.replace(config.plan, network="vit"))
