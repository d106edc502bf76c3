"""The starting models shipped in ``apps/tumor/pretrained`` (CT: an ensemble of two networks, MR T1: one): small,
weights-only, the default for their modality, carded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.compare_crossval import compare
from lib.checkpoint import load_weights
from lib.config import parse_config
from lib.infers import SegmentationInfer
from lib.networks import build_network
from lib.transforms.volume_io import read_volume
from tests.support.annotator import dice
from tests.support.server import APP

PRETRAINED = Path(APP) / "pretrained"
STS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sts"
# modality -> the STS files its model was trained on (image, expert outline)
MODELS = {"ct": ("CT_image.nii.gz", "CT_mask.nii.gz"), "mr": ("MR_T1_image.nii.gz", "MR_T1_mask.nii.gz")}
# modality -> the 5-fold cross-validation of its model's recipe (benchmarks.crossval), which its card reports
RESULTS = Path(APP).parents[1] / "benchmarks" / "results"
CROSSVAL = {
    "ct": RESULTS / "crossval_ct_ensemble_60ep_30ep_seed0.json",
    "mr": RESULTS / "crossval_mr_spatial_60ep.json",
}
# The CT model this one replaced: its recipe's cross-validation
REPLACED = {"ct": RESULTS / "crossval_ct_shipped_recipe_44ep.json"}


def shipped(modality: str) -> Path:
    return PRETRAINED / f"{modality}_tumor.pt"


def meta(modality: str) -> dict:
    return torch.load(shipped(modality), map_location="cpu", weights_only=True)["meta"]


def card(modality: str) -> str:
    return shipped(modality).with_suffix(".md").read_text()


def records(modality: str) -> list[dict]:
    """The training record of each network the model holds: its own, or each ensemble member's."""
    record = json.loads(shipped(modality).with_suffix(".pt.json").read_text())
    return record["members"] if "members" in record else [record]


def member_crossvals(result: dict) -> list[dict]:
    """The cross-validations whose fold models ``result`` scored as one ensemble; ``[result]`` if it trained them."""
    trained = result["runs"][0]["stats"].get("trained")
    if not isinstance(trained, list):
        return [result]
    root = RESULTS.parents[1]
    return [json.loads((root / Path(path).parent).with_suffix(".json").read_text()) for path in trained]


def test_each_model_is_the_default_for_its_modality_and_single_channel_plans_only() -> None:
    assert parse_config({}, APP).checkpoint == str(shipped("ct"))
    assert parse_config({"modality": "mr"}, APP).checkpoint == str(shipped("mr"))
    assert parse_config({"modality": "mr", "sequences": "t2f,t1c"}, APP).checkpoint == ""  # two channels: none fits
    assert parse_config({"checkpoint": "none"}, APP).checkpoint == ""


@pytest.mark.parametrize("modality", sorted(MODELS))
def test_the_model_is_small_and_loads_weights_only_into_the_default_network(modality: str, tmp_path: Path) -> None:
    assert shipped(modality).stat().st_size <= 20 * 2**20
    checkpoint = torch.load(shipped(modality), map_location="cpu", weights_only=True)  # no pickled code
    assert set(checkpoint) == {"model", "meta"}
    config = parse_config({"modality": modality, "model_dir": str(tmp_path)}, APP)
    assert config.plan.ensemble == len(records(modality))  # the served network has as many members as the model
    network = build_network(config.plan)
    load_weights(network, str(shipped(modality)), config.plan)  # strict: every weight of the default network
    assert sum(p.numel() for p in network.parameters()) == sum(v.numel() for v in checkpoint["model"].values())


@pytest.mark.parametrize("modality", sorted(MODELS))
def test_the_model_card_states_data_licence_command_and_the_checkpoints_own_validation(modality: str) -> None:
    text = card(modality)
    for required in ("CC BY 3.0", "Soft-tissue-Sarcoma", "10.7937/K9/TCIA.2015.7GO2GSKS", "lib.trainers.offline"):
        assert required in text, required
    stated = [float(figure) for figure in re.findall(r"validation Dice[^0-9]*([0-9.]+)", text)]
    for network in meta(modality).get("members", [meta(modality)]):  # each network's own, as its run validated it
        assert network["val_dice"] in [pytest.approx(x, abs=5e-4) for x in stated], (network["val_dice"], stated)
    for case in validation_cases(modality):
        assert case in text, f"the card does not name validation case {case}"


@pytest.mark.parametrize("modality", sorted(CROSSVAL))
def test_the_model_card_reports_the_cross_validation_of_the_models_own_recipe(modality: str) -> None:
    result = json.loads(CROSSVAL[modality].read_text())
    recipes = [trained_recipe(modality, record) for record in records(modality)]
    assert [r["conf"] for r in member_crossvals(result)] == recipes, "the cross-validation trained other recipes"
    assert len({row["case"] for row in result["cases"]}) == 20 and result["folds"] == 5
    text = card(modality)
    for key, value in (item for recipe in recipes for item in recipe.items()):
        assert key == "modality" or f"--conf {key} {value}" in text, f"the card does not give --conf {key} {value}"
    stated = re.search(r"cross-validated test Dice \**([0-9.]+)", text)
    assert stated is not None and float(stated.group(1)) == pytest.approx(result["mean_dice"], abs=5e-4)
    for row in result["cases"]:
        assert f"| {row['case']} | {row['label']} | {row['fold']} | {row['dice']:.3f} |" in text, row["case"]


def test_the_ct_card_compares_the_ensemble_with_the_model_it_replaced_and_with_each_member_alone() -> None:
    """The card's paired comparisons (mean difference, interval, cases won) are benchmarks.compare_crossval's on the
    committed cross-validations, and each is clear: the ensemble replaced the single model for that reason."""
    result = json.loads(CROSSVAL["ct"].read_text())
    text = card("ct")
    for other in [json.loads(REPLACED["ct"].read_text()), *member_crossvals(result)]:
        comparison = compare(result, other)
        low, high = comparison.interval
        stated = (
            f"{comparison.mean_difference:+.3f} (95% interval {low:+.3f} to {high:+.3f}), "
            f"higher in {comparison.higher} of 20 cases"
        )
        assert comparison.clear and stated in text, stated


def trained_recipe(modality: str, record: dict) -> dict[str, str]:
    """The options a training record ran with, as a cross-validation of the same recipe gives them.

    A run that its time budget stopped trained the epochs it finished. Its cross-validation bounds the recipe by
    those epochs instead (with a time budget it never reaches), so that other work on the machine cannot change it.
    """
    conf = {"modality": modality, **record["conf"]}
    if record["stats"].get("stopped_by_time_budget"):
        conf |= {"epochs": str(record["stats"]["epoch"]), "train_minutes": "600"}
    return conf


def validation_cases(modality: str) -> list[str]:
    """The STS cases the shipped model was validated on and never trained on."""
    cases = [name.removesuffix(".nii.gz") for name in meta(modality)["validated_on"]]
    assert cases and not set(meta(modality)["validated_on"]) & set(meta(modality)["trained_on"])
    return cases


@pytest.mark.skipif(not STS.is_dir(), reason=f"real data folder {STS} is absent")
@pytest.mark.parametrize("modality", sorted(MODELS))
def test_the_model_segments_sarcomas_it_never_trained_on(modality: str, tmp_path: Path) -> None:
    config = parse_config({"modality": modality, "model_dir": str(tmp_path), "device": "cpu"}, APP)  # the default
    assert config.plan.ensemble == len(records(modality))
    infer = SegmentationInfer(config)
    image, mask = MODELS[modality]
    scores = {}
    for case in validation_cases(modality):
        path, _ = infer({"image": str(STS / case / image), "device": "cpu"})
        truth = read_volume(str(STS / case / mask))[0][0] > 0
        scores[case] = dice(read_volume(path)[0][0] > 0, truth)
    if "members" in meta(modality):  # the ensemble was never validated as one: its card gives what this measures
        stated = re.search(r"served as an ensemble[^0-9]*([0-9.]+)", card(modality))
        assert stated is not None, "the card does not give the ensemble's Dice on its validation cases"
        expected, tolerance = float(stated.group(1)), 0.01
    else:  # validation measured on the model grid, here on each image's own grid
        expected, tolerance = meta(modality).get("val_dice_postprocessed") or meta(modality)["val_dice"], 0.05
    assert float(np.mean(list(scores.values()))) == pytest.approx(expected, abs=tolerance), scores
