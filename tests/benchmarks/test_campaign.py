"""The campaign simulates annotators' new cases: it never offers a case its starting checkpoint saw."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from benchmarks.campaign import seen_by_start
from lib.checkpoint import Weights, publish
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from lib.trainers.offline import offline_config


def test_the_cases_the_starting_checkpoint_trained_or_chose_its_epoch_on_are_seen(tmp_path: Path) -> None:
    config = offline_config({"modality": "ct"}, str(tmp_path / "model"))
    start = str(tmp_path / "start.pt")
    meta = {"trained_on": ["STS_001.nii.gz", "STS_004.nii.gz"], "validated_on": ["STS_009.nii.gz"]}
    publish([Weights(build_network(config.plan).state_dict(), meta, start)], config.plan, [SEGMENTATION])
    assert seen_by_start(Namespace(modality="CT", conf=[("checkpoint", start)])) == {"STS_001", "STS_004", "STS_009"}
    assert seen_by_start(Namespace(modality="CT", conf=[])) == set()  # from scratch: every case is new
