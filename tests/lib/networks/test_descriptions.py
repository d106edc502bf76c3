"""Each network described once: its inputs and outputs follow the plan, its files and served model are its own."""

from __future__ import annotations

import os

import pytest

from lib.config import ModelPlan
from lib.networks import build_network
from lib.networks.descriptions import CLICK_NETWORK, GUIDANCE, NETWORKS, SEGMENTATION


@pytest.mark.parametrize(
    ("labels", "channels", "segmentation", "clicks"),
    [
        (("tumor",), 1, (1, 2), (3, 2)),
        (("necrosis", "edema", "enhancing"), 4, (4, 4), (6, 2)),  # a BraTS plan: 4 sequences, 3 sub-regions
    ],
)
def test_channels_follow_the_plan(labels, channels, segmentation, clicks) -> None:
    plan = ModelPlan(labels=labels, channels=channels)
    assert (SEGMENTATION.in_channels(plan), SEGMENTATION.out_channels(plan)) == segmentation
    assert (CLICK_NETWORK.in_channels(plan), CLICK_NETWORK.out_channels(plan)) == clicks
    assert SEGMENTATION.output_names(plan) == labels and CLICK_NETWORK.output_names(plan) == ("clicked object",)
    # The built networks take and give exactly those channels.
    for network, (inputs, outputs) in ((SEGMENTATION, segmentation), (CLICK_NETWORK, clicks)):
        module = build_network(plan, network)
        convolutions = [m for m in module.modules() if hasattr(m, "in_channels") and hasattr(m, "out_channels")]
        assert convolutions[0].in_channels == inputs and convolutions[-1].out_channels == outputs


def test_a_checkpoint_records_the_plan_and_the_click_guidance() -> None:
    plan = ModelPlan(modality="mr")
    assert SEGMENTATION.architecture(plan) == plan.recorded()
    assert "ct_window" not in plan.recorded()  # MR preprocessing has no window
    assert CLICK_NETWORK.architecture(plan) == {**plan.recorded(), "guidance": list(GUIDANCE)}
    assert SEGMENTATION.architecture(plan) != SEGMENTATION.architecture(ModelPlan(spacing=(1.0, 1.0, 1.0)))


def test_each_network_has_its_own_files_and_served_model(tmp_path) -> None:
    model_dir = str(tmp_path)
    paths = [p for n in NETWORKS for p in (n.published_path(model_dir), n.last_path(model_dir))]
    assert len(set(paths)) == 4 and all(os.path.dirname(p) == model_dir for p in paths)
    assert SEGMENTATION.last_path(model_dir).endswith("segmentation_last.pt")
    assert {n.served_as for n in NETWORKS} == {"segmentation", "deepedit"}
    assert [n.name for n in NETWORKS] == ["segmentation", "click_network"]  # training order
    assert SEGMENTATION.keeps_largest and not CLICK_NETWORK.keeps_largest
