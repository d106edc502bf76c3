"""The campaign simulates annotators' new cases: it never offers a case its starting checkpoint saw."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from benchmarks.campaign import Step, report, seen_by_start
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


def test_the_report_of_a_short_campaign_measures_the_effort_to_its_last_case(tmp_path: Path) -> None:
    dice = [0.5, 0.4, 0.6, 0.7]  # the start, then rounds 1-3
    effort = [0.0, 2.0, 1.0, 0.5]
    steps = [
        Step("random", n, f"STS_00{n}", effort[n], 10.0, 4, dice[n], {"STS_009": dice[n]}, dice[n], [], 0.0)
        for n in range(4)
    ]
    args = Namespace(modality="CT", name="short", out=str(tmp_path), strategies=["random"], labels=3, conf=[])
    args.train_minutes, args.include_seen = 2.0, True
    report(steps, ["STS_009"], args)
    text = (tmp_path / "campaign_ct_short.txt").read_text()
    assert "; --include-seen" in text.splitlines()[0]
    assert "random: dev Dice at 3 labels 0.700; effort case 1 2.00 -> case 3 0.50 (falls 75%); mean round 10 s" in text
    assert "random: starting weights 0.500; lowest round 0.400 (labels 1); below the start in 1 of 3 rounds (1)" in text
    assert (tmp_path / "campaign_ct_short.png").stat().st_size > 0
