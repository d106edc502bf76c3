"""The CT starting model shipped in ``apps/tumor/pretrained``: small, weights-only, the default for CT, carded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.checkpoint import load_weights
from lib.config import parse_config
from lib.infers import SegmentationInfer
from lib.networks import build_network
from lib.transforms.volume_io import read_volume
from tests.support.annotator import dice
from tests.support.server import APP

SHIPPED = Path(APP) / "pretrained" / "ct_tumor.pt"
CARD = Path(APP) / "pretrained" / "ct_tumor.md"
STS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sts"


def meta() -> dict:
    return torch.load(SHIPPED, map_location="cpu", weights_only=True)["meta"]


def test_the_ct_model_is_the_default_for_ct_only() -> None:
    assert parse_config({}, APP).checkpoint == str(SHIPPED)
    assert parse_config({"modality": "mr"}, APP).checkpoint == ""  # no MR model is shipped
    assert parse_config({"checkpoint": "none"}, APP).checkpoint == ""


def test_the_ct_model_is_small_and_loads_weights_only_into_the_default_network() -> None:
    assert SHIPPED.stat().st_size <= 20 * 2**20
    checkpoint = torch.load(SHIPPED, map_location="cpu", weights_only=True)  # no pickled code
    assert set(checkpoint) == {"model", "meta"}
    config = parse_config({}, APP)
    network = build_network(config.plan)
    load_weights(network, str(SHIPPED), config.plan)  # strict: every weight of the default CT network
    assert sum(p.numel() for p in network.parameters()) == sum(v.numel() for v in checkpoint["model"].values())


def test_the_model_card_states_data_licence_command_and_the_checkpoints_own_validation() -> None:
    card = CARD.read_text()
    for required in ("CC BY 3.0", "Soft-tissue-Sarcoma", "10.7937/K9/TCIA.2015.7GO2GSKS", "lib.trainers.offline"):
        assert required in card, required
    stated = re.search(r"validation Dice[^0-9]*([0-9.]+)", card)
    assert stated is not None and float(stated.group(1)) == pytest.approx(meta()["val_dice"], abs=5e-4)
    for case in validation_cases():
        assert case in card, f"the card does not name validation case {case}"


def validation_cases() -> list[str]:
    """The STS cases the shipped model was validated on and never trained on."""
    cases = [name.removesuffix(".nii.gz") for name in meta()["validated_on"]]
    assert cases and not set(meta()["validated_on"]) & set(meta()["trained_on"])
    return cases


@pytest.mark.skipif(not STS.is_dir(), reason=f"real data folder {STS} is absent")
def test_the_ct_model_segments_sarcomas_it_never_trained_on(tmp_path: Path) -> None:
    config = parse_config({"model_dir": str(tmp_path), "device": "cpu"}, APP)  # the default: the shipped model
    infer = SegmentationInfer(config)
    scores = {}
    for case in validation_cases():
        path, _ = infer({"image": str(STS / case / "CT_image.nii.gz"), "device": "cpu"})
        truth = read_volume(str(STS / case / "CT_mask.nii.gz"))[0][0] > 0
        scores[case] = dice(read_volume(path)[0][0] > 0, truth)
    served = meta().get("val_dice_postprocessed") or meta()["val_dice"]  # served as validation chose
    assert float(np.mean(list(scores.values()))) == pytest.approx(served, abs=0.05), scores
