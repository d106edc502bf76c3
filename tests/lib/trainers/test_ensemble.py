"""Separately trained checkpoints combine into one ensemble checkpoint, which the app serves and fine-tunes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from monai.transforms import Compose

from lib.checkpoint import CheckpointError, Weights, publish, read_checkpoint, serving_checkpoint
from lib.config import AppConfig, ConfigError
from lib.datastore import TumorDatastore
from lib.infers import SegmentationInfer
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from lib.networks.ensemble import Ensemble
from lib.trainers import TrainingRun
from lib.trainers.ensemble import combine
from lib.trainers.network_trainer import NetworkTrainer
from lib.transforms.pipeline import LABEL, PRED
from tests.synthetic import SyntheticCase, write_case

ConfigFactory = Callable[..., AppConfig]


def member(config: AppConfig, path: Path, **meta: object) -> str:
    """A single-network checkpoint of ``config``'s plan with random weights and ``meta``."""
    state = build_network(config.plan).state_dict()
    publish([Weights(state, {"run_id": path.stem, **meta}, str(path))], config.plan, [SEGMENTATION])
    return str(path)


@pytest.fixture
def members(config: AppConfig, tmp_path: Path) -> list[str]:
    return [
        member(config, tmp_path / "a.pt", keep_largest=["tumor"], trained_on=["c1", "c2"], validated_on=["c3", "c4"]),
        member(config, tmp_path / "b.pt", keep_largest=[], trained_on=["c2", "c4"], validated_on=["c3", "c4"]),
    ]


def test_the_ensemble_holds_each_members_weights_and_their_joint_record(
    config: AppConfig, members: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "ensemble.pt")
    combine(members, config.plan, out)

    state, meta = read_checkpoint(out, dataclasses.replace(config.plan, ensemble=2))
    assert meta["architecture"]["ensemble"] == 2
    for i, path in enumerate(members):
        single = torch.load(path, weights_only=True)["model"]
        assert all(torch.equal(state[f"members.{i}.{k}"], v) for k, v in single.items())
    assert len(state) == 2 * len(single)
    assert meta["keep_largest"] == []  # a's validation chose the largest component, b's did not
    assert meta["trained_on"] == ["c1", "c2", "c4"]  # every case a member saw
    assert meta["validated_on"] == ["c3"]  # c4 trained member b
    assert meta["run_id"] == "a+b"
    assert [m["file"] for m in meta["members"]] == ["a.pt", "b.pt"]
    assert [m["keep_largest"] for m in meta["members"]] == [["tumor"], []]
    assert not Path(f"{out}.json").exists()  # the members have no training records


def test_the_members_training_records_are_kept_together(config: AppConfig, members: list[str]) -> None:
    for seed, path in enumerate(members):
        Path(f"{path}.json").write_text(json.dumps({"conf": {"epochs": str(30 * (seed + 1))}, "seed": seed}))
    out = str(Path(members[0]).parent / "ensemble.pt")
    combine(members, config.plan, out)
    record = json.loads(Path(f"{out}.json").read_text())
    assert record == {
        "members": [
            {"file": "a.pt", "conf": {"epochs": "30"}, "seed": 0},
            {"file": "b.pt", "conf": {"epochs": "60"}, "seed": 1},
        ]
    }
    Path(f"{members[1]}.json").unlink()  # combined again without one record: no record that would mislead
    combine(members, config.plan, out)
    assert not Path(f"{out}.json").exists()


def test_the_ensemble_has_trained_on_unknown_cases_when_a_member_does_not_say(
    config: AppConfig, members: list[str], tmp_path: Path
) -> None:
    older = member(config, tmp_path / "older.pt")  # published before checkpoints recorded their cases
    out = str(tmp_path / "ensemble.pt")
    meta = combine([members[0], older], config.plan, out)
    assert (
        "trained_on" not in meta
        and "trained_on" not in read_checkpoint(out, dataclasses.replace(config.plan, ensemble=2))[1]
    )


def test_members_must_be_two_single_networks_of_the_plan(
    make_config: ConfigFactory, config: AppConfig, members: list[str], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="at least 2 member checkpoints, not 1"):
        combine(members[:1], config.plan, str(tmp_path / "x.pt"))
    wider = member(make_config(features="16"), tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match="checkpoint wide.pt was trained for .*'features': 16"):
        combine([members[0], wider], config.plan, str(tmp_path / "x.pt"))
    combine(members, config.plan, str(tmp_path / "pair.pt"))
    with pytest.raises(CheckpointError, match="checkpoint pair.pt was trained for .*'ensemble': 2"):
        combine([members[0], str(tmp_path / "pair.pt")], config.plan, str(tmp_path / "x.pt"))
    torch.save(build_network(config.plan).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="member bare.pt records no plan"):
        combine([members[0], str(tmp_path / "bare.pt")], config.plan, str(tmp_path / "x.pt"))
    assert not (tmp_path / "x.pt").exists()


def test_the_ensemble_size_follows_the_weights_that_will_be_served(
    make_config: ConfigFactory, config: AppConfig, members: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "ensemble.pt")
    combine(members, config.plan, out)
    assert make_config(checkpoint=out).plan.ensemble == 2
    assert make_config(checkpoint=members[0]).plan.ensemble == 1
    with pytest.raises(ConfigError, match="cannot be served: .* trained for"):  # said, and then the weights do not fit
        make_config(checkpoint=out, ensemble="3")
    # A server that already publishes its own single network keeps serving it, whatever the starting checkpoint.
    publish([Weights(build_network(config.plan).state_dict(), {}, serving_path(config))], config.plan, [SEGMENTATION])
    assert make_config(checkpoint=out).plan.ensemble == 1


def serving_path(config: AppConfig) -> str:
    return SEGMENTATION.published_path(config.model_dir)


def test_auto_segmentation_serves_the_ensemble(
    make_config: ConfigFactory, members: list[str], case: SyntheticCase, tmp_path: Path
) -> None:
    out = str(tmp_path / "ensemble.pt")
    combine(members, make_config().plan, out)
    config = make_config(checkpoint=out)
    infer = SegmentationInfer(config)
    assert infer.description == "Tumour auto segmentation (CT, tumor; ensemble of 2 networks)"  # shown in 3D Slicer
    network, meta = infer.network_for("cpu")
    assert isinstance(network, Ensemble) and meta["checkpoint"] == "ensemble.pt"
    for served, path in zip(network.members, members):
        single = torch.load(path, weights_only=True)["model"]
        assert all(torch.equal(served.state_dict()[k], v) for k, v in single.items())
    result, params = infer({"image": case.image_path, "device": "cpu"})
    assert params["model"]["checkpoint"] == "ensemble.pt" and params["keep_largest"] == []
    assert Path(result).stat().st_size > 0


def test_a_training_run_fine_tunes_every_member_and_publishes_the_ensemble(
    make_config: ConfigFactory, members: list[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "ensemble.pt")
    combine(members, make_config().plan, out)
    studies = tmp_path / "studies"
    for i in range(3):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    run = {
        "epochs": "1",
        "click_epochs": "0",
        "samples_per_case": "2",
        "min_val_cases": "5",
        "finetune_min_labels": "3",
    }
    config = make_config(checkpoint=out, finetune_learning_rate="0.01", **run)
    result = TrainingRun(config)({}, TumorDatastore(str(studies), config))

    assert result["status"] == "DONE" and result["networks"]["segmentation"]["starting_model"] == "ensemble.pt"
    assert serving_checkpoint(config) == serving_path(config)
    state, meta = read_checkpoint(serving_path(config), config.plan)
    assert meta["architecture"]["ensemble"] == 2
    start = torch.load(out, weights_only=True)["model"]
    for i in range(2):  # both members moved from their starting weights
        keys = [k for k in start if k.startswith(f"members.{i}.") and start[k].is_floating_point()]
        assert any(not torch.equal(state[k], start[k]) for k in keys)


def test_validation_scores_the_ensembles_own_average(make_config: ConfigFactory) -> None:
    # In eval mode an ensemble returns its members' average; validation averaged it again, so every ensemble
    # validated at Dice 0 and each fine-tuning round from the shipped model kept the served weights.
    config = make_config(ensemble="2")
    trainer = NetworkTrainer(config, SEGMENTATION)
    network = build_network(config.plan).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        output = network(torch.randn(1, 1, 32, 32, 16))[0]  # (classes, I, J, K): the mean log-softmax
    label = output.argmax(0, keepdim=True)
    post = Compose(trainer.val_post_transforms(None))({PRED: output, LABEL: label})
    assert post[PRED].shape == (2, 32, 32, 16)
    assert torch.equal(post[PRED], post[LABEL])  # the ensemble's prediction, scored against itself: Dice 1
