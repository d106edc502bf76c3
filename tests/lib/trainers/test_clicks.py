"""The click-guided network is trained in the same run as the segmentation network and published beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lib.checkpoint import load_weights, publish_checkpoint, read_checkpoint
from lib.config import CLICKS, GUIDANCE, TumorConfig
from lib.datastore import TumorDatastore
from lib.networks import build_network
from lib.trainers import SegmentationTrainer
from tests.synthetic import write_case


def labelled_studies(tmp_path: Path, cases: int = 3) -> str:
    studies = tmp_path / "studies"
    for i in range(cases):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    return str(studies)


def test_training_run_also_trains_and_publishes_the_click_network(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="2", click_rounds="1", samples_per_case="2")
    result = SegmentationTrainer(config)({}, TumorDatastore(labelled_studies(tmp_path), config))

    assert result["status"] == "DONE" and result[CLICKS]["status"] == "DONE"
    assert (result["epoch"], result[CLICKS]["epoch"]) == (1, 2)
    assert result[CLICKS]["cases"] == {"train": 2, "val": 1}
    assert set(result[CLICKS]["dice_per_label"]) == {"clicked object"}
    stats = json.loads(Path(config.model_dir, "clicks_train_stats.json").read_text())
    assert stats["run_id"] == result[CLICKS]["run_id"]

    state, meta = read_checkpoint(config.published_path(CLICKS), config, CLICKS)
    assert meta["architecture"]["guidance"] == list(GUIDANCE) and meta["run_id"] == stats["run_id"]
    network = build_network(config, model=CLICKS)
    load_weights(network, config.published_path(CLICKS), config, CLICKS)
    first = next(m for m in network.modules() if hasattr(m, "in_channels"))
    assert first.in_channels == config.channels + 2  # image + foreground + background clicks
    assert Path(config.published_path()).is_file()  # the segmentation network was published too
    assert {p.name for p in Path(config.model_dir).glob("*_runs")} == {"segmentation_runs", "clicks_runs"}


def test_no_click_network_when_click_epochs_is_zero(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    result = SegmentationTrainer(config)({}, TumorDatastore(labelled_studies(tmp_path, 2), config))
    assert result["status"] == "DONE" and CLICKS not in result
    assert Path(config.published_path()).is_file() and not Path(config.published_path(CLICKS)).exists()


def test_time_budget_ends_both_networks_runs_early_and_publishes(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(
        epochs="50", click_epochs="50", click_rounds="1", samples_per_case="2", train_minutes="0.001"
    )
    result = SegmentationTrainer(config)({}, TumorDatastore(labelled_studies(tmp_path), config))

    assert (result["epoch"], result[CLICKS]["epoch"]) == (1, 1)
    assert result["stopped_by_time_budget"] and result[CLICKS]["stopped_by_time_budget"]
    assert Path(config.published_path()).is_file() and Path(config.published_path(CLICKS)).is_file()


def test_annotator_time_budget_must_be_positive(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="0")
    with pytest.raises(ValueError, match="train_minutes > 0"):
        SegmentationTrainer(config)({"train_minutes": "0"}, TumorDatastore(labelled_studies(tmp_path, 2), config))


def test_second_run_validates_the_weights_it_fine_tunes(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2", min_val_cases="1")
    datastore = TumorDatastore(labelled_studies(tmp_path), config)
    first = SegmentationTrainer(config)({}, datastore)
    second = SegmentationTrainer(config)({}, datastore)

    assert first["start_metric"] is None  # from scratch: nothing to compare with
    assert first["niceness"] == os.getpriority(os.PRIO_PROCESS, 0)  # a run in the caller's process keeps its priority
    assert second["start_metric"] is not None and second["best_metric"] >= second["start_metric"]
    assert second["best_metric_epoch"] in (0, 1)


def test_weights_are_not_validated_on_cases_they_trained_on(make_config, tmp_path: Path) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    datastore = TumorDatastore(labelled_studies(tmp_path), config)
    first = SegmentationTrainer(config)({"val_split": 0}, datastore)  # trains on all three cases
    _, meta = read_checkpoint(config.published_path(), config)
    second = SegmentationTrainer(config)({"val_split": 0.34}, datastore)

    assert first["cases"] == {"train": 3, "val": 0}
    assert meta["trained_on"] == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    assert second["cases"] == {"train": 2, "val": 1} and second["start_metric"] is None
    _, second_meta = read_checkpoint(config.published_path(), config)
    assert len(second_meta["validated_on"]) == 1 and second_meta["validated_on"][0] in meta["trained_on"]


def first_tensor(path: str, config: TumorConfig) -> torch.Tensor:
    return next(iter(read_checkpoint(path, config)[0].values()))


@pytest.mark.parametrize("same_run", [True, False])
def test_next_run_continues_from_the_final_weights_of_the_run_that_published_the_served_ones(
    make_config, tmp_path: Path, same_run: bool
) -> None:
    config: TumorConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    datastore = TumorDatastore(labelled_studies(tmp_path), config)
    first = SegmentationTrainer(config)({}, datastore)
    final = first_tensor(config.last_path(), config)
    # Served weights unlike the first run's final ones: published by that run (an earlier, better epoch) or not.
    served = {k: torch.full_like(v, 0.5) for k, v in build_network(config).state_dict().items()}
    run_id = first["run_id"] if same_run else "replaced by hand"
    publish_checkpoint(served, {"run_id": run_id, "trained_on": []}, config.published_path(), config)

    # A learning rate so small that the second run's final weights are the ones it started from.
    SegmentationTrainer(make_config(epochs="1", click_epochs="0", samples_per_case="2", learning_rate="1e-9"))(
        {}, datastore
    )

    start = final if same_run else served[next(iter(served))]
    torch.testing.assert_close(first_tensor(config.last_path(), config), start, atol=1e-5, rtol=0)
