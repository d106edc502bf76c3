"""The starting models shipped in ``apps/tumor/pretrained`` (CT, MR T1): small, weights-only, the default for their
modality, carded."""

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
CROSSVAL = {"ct": RESULTS / "crossval_ct_shipped_recipe_44ep.json", "mr": RESULTS / "crossval_mr_spatial_60ep.json"}
# modality -> training options that were the defaults when its model was trained, so its record does not name them
# (augmentation became `spatial` in 8bad122, after the CT model was trained with `flips`)
DEFAULTS_WHEN_TRAINED = {"ct": {"augmentation": "flips"}}


def shipped(modality: str) -> Path:
    return PRETRAINED / f"{modality}_tumor.pt"


def meta(modality: str) -> dict:
    return torch.load(shipped(modality), map_location="cpu", weights_only=True)["meta"]


def test_each_model_is_the_default_for_its_modality_and_single_channel_plans_only() -> None:
    assert parse_config({}, APP).checkpoint == str(shipped("ct"))
    assert parse_config({"modality": "mr"}, APP).checkpoint == str(shipped("mr"))
    assert parse_config({"modality": "mr", "sequences": "t2f,t1c"}, APP).checkpoint == ""  # two channels: none fits
    assert parse_config({"checkpoint": "none"}, APP).checkpoint == ""


@pytest.mark.parametrize("modality", sorted(MODELS))
def test_the_model_is_small_and_loads_weights_only_into_the_default_network(modality: str) -> None:
    assert shipped(modality).stat().st_size <= 20 * 2**20
    checkpoint = torch.load(shipped(modality), map_location="cpu", weights_only=True)  # no pickled code
    assert set(checkpoint) == {"model", "meta"}
    config = parse_config({"modality": modality}, APP)
    network = build_network(config.plan)
    load_weights(network, str(shipped(modality)), config.plan)  # strict: every weight of the default network
    assert sum(p.numel() for p in network.parameters()) == sum(v.numel() for v in checkpoint["model"].values())


@pytest.mark.parametrize("modality", sorted(MODELS))
def test_the_model_card_states_data_licence_command_and_the_checkpoints_own_validation(modality: str) -> None:
    card = shipped(modality).with_suffix(".md").read_text()
    for required in ("CC BY 3.0", "Soft-tissue-Sarcoma", "10.7937/K9/TCIA.2015.7GO2GSKS", "lib.trainers.offline"):
        assert required in card, required
    stated = re.search(r"validation Dice[^0-9]*([0-9.]+)", card)
    assert stated is not None and float(stated.group(1)) == pytest.approx(meta(modality)["val_dice"], abs=5e-4)
    for case in validation_cases(modality):
        assert case in card, f"the card does not name validation case {case}"


@pytest.mark.parametrize("modality", sorted(CROSSVAL))
def test_the_model_card_reports_the_cross_validation_of_the_models_own_recipe(modality: str) -> None:
    result = json.loads(CROSSVAL[modality].read_text())
    record = json.loads(shipped(modality).with_suffix(".pt.json").read_text())
    assert result["conf"] == trained_recipe(modality, record), "the cross-validation trained another recipe"
    assert len({row["case"] for row in result["cases"]}) == 20 and result["folds"] == 5
    card = shipped(modality).with_suffix(".md").read_text()
    for key, value in result["conf"].items():
        assert key == "modality" or f"--conf {key} {value}" in card, f"the card does not give --conf {key} {value}"
    stated = re.search(r"cross-validated test Dice \**([0-9.]+)", card)
    assert stated is not None and float(stated.group(1)) == pytest.approx(result["mean_dice"], abs=5e-4)
    for row in result["cases"]:
        assert f"| {row['case']} | {row['label']} | {row['fold']} | {row['dice']:.3f} |" in card, row["case"]


def test_the_ct_card_compares_its_recipe_with_the_best_other_candidate_as_the_comparison_gives_it() -> None:
    """The card's paired comparison (mean difference, cases won, interval, Wilcoxon p) is benchmarks.compare_crossval's
    on the two committed cross-validations, and the model stays only because that comparison is not clear."""
    best_other = json.loads((RESULTS / "crossval_ct_spatial_30ep.json").read_text())
    comparison = compare(best_other, json.loads(CROSSVAL["ct"].read_text()))
    card = shipped("ct").with_suffix(".md").read_text()
    low, high = comparison.interval
    assert f"higher by {comparison.mean_difference:.3f} on average, in {comparison.higher} of 20 cases" in card
    assert f"between {low:+.3f} and {high:+.3f} (95%)" in card
    assert f"Wilcoxon signed-rank test gives p = {comparison.wilcoxon_p:.3f}" in card
    assert not comparison.clear and "That is not a clear difference" in card
    longer = compare(
        json.loads((RESULTS / "crossval_ct_spatial_60ep.json").read_text()), json.loads(CROSSVAL["ct"].read_text())
    )
    low, high = longer.interval
    assert (
        f"higher than this recipe by {longer.mean_difference:.3f} with an interval of {low:+.3f} to {high:+.3f}" in card
    )
    assert not longer.clear
    ensemble = compare(
        json.loads((RESULTS / "crossval_ct_ensemble_60ep_30ep_seed0.json").read_text()),
        json.loads(CROSSVAL["ct"].read_text()),
    )
    low, high = ensemble.interval
    stated = (
        f"ensemble minus this recipe {ensemble.mean_difference:.3f} on average, 95% interval {low:+.3f} to {high:+.3f}"
    )
    assert ensemble.clear and stated in card and f"higher in {ensemble.higher} of 20 cases" in card


def trained_recipe(modality: str, record: dict) -> dict[str, str]:
    """The options a training record ran with, as a cross-validation of the same recipe gives them.

    A run that its time budget stopped trained the epochs it finished. Its cross-validation bounds the recipe by
    those epochs instead (with a time budget it never reaches), so that other work on the machine cannot change it.
    """
    conf = {"modality": modality, **DEFAULTS_WHEN_TRAINED.get(modality, {}), **record["conf"]}
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
    infer = SegmentationInfer(config)
    image, mask = MODELS[modality]
    scores = {}
    for case in validation_cases(modality):
        path, _ = infer({"image": str(STS / case / image), "device": "cpu"})
        truth = read_volume(str(STS / case / mask))[0][0] > 0
        scores[case] = dice(read_volume(path)[0][0] > 0, truth)
    served = meta(modality).get("val_dice_postprocessed") or meta(modality)["val_dice"]  # as validation chose
    assert float(np.mean(list(scores.values()))) == pytest.approx(served, abs=0.05), scores
