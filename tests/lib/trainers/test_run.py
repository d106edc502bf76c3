"""One training run trains the segmentation network, then the click network, and publishes both only at its end."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from lib.checkpoint import Weights, load_weights, publish, read_checkpoint
from lib.config import AppConfig
from lib.datastore import TumorDatastore
from lib.networks import build_network
from lib.networks.descriptions import CLICK_NETWORK, GUIDANCE, SEGMENTATION
from lib.trainers import TrainingRun
from lib.trainers.epoch_monitor import EpochMonitor
from lib.trainers.run_stats import RunStats
from tests.synthetic import write_case


def labelled_studies(tmp_path: Path, cases: int = 3) -> str:
    studies = tmp_path / "studies"
    for i in range(cases):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    return str(studies)


def run(app_config: AppConfig, studies: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
    return TrainingRun(app_config)(request or {}, TumorDatastore(studies, app_config))


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every stats document a run writes, in order."""
    documents: list[dict[str, Any]] = []
    write = RunStats.write

    def record(self: RunStats, status: str) -> None:
        documents.append(self.document(status))
        write(self, status)

    monkeypatch.setattr(RunStats, "write", record)
    return documents


def test_max_epochs_1_trains_one_epoch_of_each_network_with_progress_forward_only(
    make_config, tmp_path: Path, written: list[dict[str, Any]]
) -> None:
    config: AppConfig = make_config(epochs="5", click_epochs="20", click_rounds="1", samples_per_case="2")
    result = run(config, labelled_studies(tmp_path), {"max_epochs": 1})

    networks = result["networks"]
    assert result["status"] == "DONE" and (result["epoch"], result["total_epochs"]) == (2, 2)
    assert (networks["segmentation"]["epoch"], networks["click_network"]["epoch"]) == (1, 1)
    assert networks["click_network"]["cases"] == networks["segmentation"]["cases"] == {"train": 2, "val": 1}
    assert set(networks["click_network"]["dice_per_label"]) == {"clicked object"}
    assert result["best_metric"] == pytest.approx(networks["segmentation"]["best_metric"] or 0.0)
    # 3D Slicer's progress bar, as the module computes it while the run is RUNNING: 0, 1/2, 2/2.
    progress = [d["epoch"] / d["total_epochs"] for d in written if d["status"] == "RUNNING"]
    assert progress == [0.0, 0.5, 1.0]
    assert [d["status"] for d in written][-1] == "DONE" and "total_time" in written[-1]
    assert all("total_time" not in d for d in written[:-1])

    state, meta = read_checkpoint(CLICK_NETWORK.published_path(config.model_dir), config.plan, CLICK_NETWORK)
    assert meta["architecture"]["guidance"] == list(GUIDANCE) and meta["run_id"] == result["run_id"]
    _, seg_meta = read_checkpoint(SEGMENTATION.published_path(config.model_dir), config.plan)
    assert seg_meta["run_id"] == result["run_id"]
    network = build_network(config.plan, CLICK_NETWORK)
    load_weights(network, CLICK_NETWORK.published_path(config.model_dir), config.plan, CLICK_NETWORK)
    first = next(m for m in network.modules() if hasattr(m, "in_channels"))
    assert first.in_channels == config.plan.channels + 2  # image + foreground + background clicks
    assert {p.name for p in Path(config.model_dir).glob("*_runs")} == {"segmentation_runs", "click_network_runs"}
    assert sorted(p.name for p in Path(config.model_dir).glob("*.json")) == ["train_stats.json"]


def test_no_click_network_when_click_epochs_is_zero(make_config, tmp_path: Path) -> None:
    config: AppConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    result = run(config, labelled_studies(tmp_path, 2))
    assert result["status"] == "DONE" and list(result["networks"]) == ["segmentation"]
    assert Path(SEGMENTATION.published_path(config.model_dir)).is_file()
    assert not Path(CLICK_NETWORK.published_path(config.model_dir)).exists()


def test_time_budget_ends_both_networks_early_and_the_run_publishes(make_config, tmp_path: Path, written) -> None:
    config: AppConfig = make_config(
        epochs="50", click_epochs="50", click_rounds="1", samples_per_case="2", train_minutes="0.001"
    )
    result = run(config, labelled_studies(tmp_path))

    networks = result["networks"]
    assert (networks["segmentation"]["epoch"], networks["click_network"]["epoch"]) == (1, 1)
    assert networks["segmentation"]["stopped_by_time_budget"] and networks["click_network"]["stopped_by_time_budget"]
    assert (result["epoch"], result["total_epochs"]) == (2, 2)  # the plan shrinks to what the budget allowed
    progress = [d["epoch"] / d["total_epochs"] for d in written if d["status"] == "RUNNING"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert Path(SEGMENTATION.published_path(config.model_dir)).is_file()
    assert Path(CLICK_NETWORK.published_path(config.model_dir)).is_file()


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("failing", [SEGMENTATION, CLICK_NETWORK])
def test_a_run_that_fails_in_either_network_publishes_nothing(
    make_config, publish_weights, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing
) -> None:
    """A crash (or a kill) in either phase leaves both served files byte-identical, and the last weights too."""
    config: AppConfig = make_config(epochs="2", click_epochs="2", click_rounds="1", samples_per_case="2")
    served = [publish_weights(config, "served", network) for network in (SEGMENTATION, CLICK_NETWORK)]
    before = [digest(p) for p in served]
    completed = EpochMonitor._epoch_completed

    def crash(self: EpochMonitor, trainer: Any) -> None:
        completed(self, trainer)
        if self.network == failing:
            raise RuntimeError("killed")

    monkeypatch.setattr(EpochMonitor, "_epoch_completed", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run(config, labelled_studies(tmp_path))

    assert [digest(p) for p in served] == before
    assert not any(Path(n.last_path(config.model_dir)).exists() for n in (SEGMENTATION, CLICK_NETWORK))
    assert not list(Path(config.model_dir).glob(".*.tmp"))


def test_a_run_whose_server_has_ended_publishes_nothing(make_config, tmp_path: Path, monkeypatch) -> None:
    """The lifeline ends a server's background process within a second; a run finishing in that second must not
    publish either."""
    monkeypatch.setattr("lib.trainers.run.server_alive", lambda: False)
    config: AppConfig = make_config(epochs="1", click_epochs="1", click_rounds="1", samples_per_case="2")
    run(config, labelled_studies(tmp_path, 2))
    assert not [p.name for p in Path(config.model_dir).glob("*.pt")]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"train_minutes": "0"}, r"train_minutes='0' is not accepted: minutes in \(0, 1440\]"),
        ({"max_epochs": ["many"]}, "max_epochs='many' is not accepted: an integer >= 1"),
        ({"tracking": "wandb"}, "tracking='wandb' is not accepted: 'None' or 'mlflow'"),
    ],
)
def test_bad_options_are_a_clear_error(make_config, tmp_path: Path, request_: dict, message: str) -> None:
    config: AppConfig = make_config(epochs="1", click_epochs="0")
    with pytest.raises(ValueError, match=message):
        run(config, labelled_studies(tmp_path, 2), request_)
    assert not Path(config.model_dir, "train_stats.json").exists()


def test_second_run_validates_the_weights_it_fine_tunes(make_config, tmp_path: Path) -> None:
    config: AppConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2", min_val_cases="1")
    studies = labelled_studies(tmp_path)
    first = run(config, studies)["networks"]["segmentation"]
    second_run = run(config, studies)
    second = second_run["networks"]["segmentation"]

    assert first["start_metric"] is None  # from scratch: nothing to compare with
    assert second_run["niceness"] == os.getpriority(os.PRIO_PROCESS, 0)  # in the caller's process: its priority
    assert second["start_metric"] is not None and second["best_metric"] >= second["start_metric"]
    assert second["best_metric_epoch"] in (0, 1)


def test_weights_are_not_validated_on_cases_they_trained_on(make_config, tmp_path: Path) -> None:
    config: AppConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    studies = labelled_studies(tmp_path)
    first = run(config, studies, {"val_split": 0})["networks"]["segmentation"]  # trains on all three cases
    path = SEGMENTATION.published_path(config.model_dir)
    _, meta = read_checkpoint(path, config.plan)
    second = run(config, studies, {"val_split": 0.34})["networks"]["segmentation"]

    assert first["cases"] == {"train": 3, "val": 0}
    assert meta["trained_on"] == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    assert second["cases"] == {"train": 2, "val": 1} and second["start_metric"] is None
    _, second_meta = read_checkpoint(path, config.plan)
    assert len(second_meta["validated_on"]) == 1 and second_meta["validated_on"][0] in meta["trained_on"]


def first_tensor(path: str, config: AppConfig) -> torch.Tensor:
    return next(iter(read_checkpoint(path, config.plan)[0].values()))


@pytest.mark.parametrize("same_run", [True, False])
def test_next_run_continues_from_the_final_weights_of_the_run_that_published_the_served_ones(
    make_config, tmp_path: Path, same_run: bool
) -> None:
    config: AppConfig = make_config(epochs="1", click_epochs="0", samples_per_case="2")
    studies = labelled_studies(tmp_path)
    first = run(config, studies)
    last = SEGMENTATION.last_path(config.model_dir)
    final = first_tensor(last, config)
    # Served weights unlike the first run's final ones: published by that run (an earlier, better epoch) or not.
    served = {k: torch.full_like(v, 0.5) for k, v in build_network(config.plan).state_dict().items()}
    run_id = first["run_id"] if same_run else "replaced by hand"
    path = SEGMENTATION.published_path(config.model_dir)
    publish([Weights(served, {"run_id": run_id, "trained_on": []}, path)], config.plan, [SEGMENTATION])

    # A learning rate so small that the second run's final weights are the ones it started from.
    run(make_config(epochs="1", click_epochs="0", samples_per_case="2", learning_rate="1e-9"), studies)

    start = final if same_run else served[next(iter(served))]
    torch.testing.assert_close(first_tensor(last, config), start, atol=1e-5, rtol=0)


def test_weights_descending_from_a_starting_checkpoint_are_fine_tuned_at_the_fine_tuning_rate(
    make_config, tmp_path: Path
) -> None:
    rates = {"epochs": "1", "click_epochs": "0", "samples_per_case": "2", "min_val_cases": "5"}
    rates |= {"learning_rate": "0.05", "finetune_learning_rate": "1e-9", "finetune_min_labels": "1"}
    studies = labelled_studies(tmp_path)
    plan = make_config().plan
    start = {k: torch.full_like(v, 0.01) for k, v in build_network(plan).state_dict().items()}
    starting = str(tmp_path / "starting.pt")
    publish([Weights(start, {"trained_on": ["elsewhere.nii.gz"]}, starting)], plan, [SEGMENTATION])
    config: AppConfig = make_config(checkpoint=starting, **rates)
    published, last = SEGMENTATION.published_path(config.model_dir), SEGMENTATION.last_path(config.model_dir)

    first = run(config, studies)["networks"]["segmentation"]  # from the starting checkpoint itself
    first_meta = read_checkpoint(published, config.plan)[1]
    torch.testing.assert_close(first_tensor(last, config), start[next(iter(start))], atol=1e-6, rtol=0)
    second = run(config, studies)["networks"]["segmentation"]  # from the first run's weights: same lineage

    assert first["learning_rate"] == second["learning_rate"] == 1e-9
    assert first["starting_model"] == second["starting_model"] == "starting.pt"
    assert first_meta["starting_model"] == read_checkpoint(last, config.plan)[1]["starting_model"] == "starting.pt"
    assert read_checkpoint(published, config.plan)[1]["starting_model"] == "starting.pt"

    scratch = make_config(checkpoint="none", model_dir=str(tmp_path / "scratch"), **rates)
    from_scratch = run(scratch, studies)["networks"]["segmentation"]
    assert from_scratch["learning_rate"] == 0.05 and "starting_model" not in from_scratch
    assert "starting_model" not in read_checkpoint(SEGMENTATION.published_path(scratch.model_dir), plan)[1]


def test_fine_tuned_weights_replace_the_starting_model_only_from_finetune_min_labels(
    make_config, tmp_path: Path
) -> None:
    fast = {"epochs": "1", "click_epochs": "0", "samples_per_case": "2", "finetune_min_labels": "4"}
    plan = make_config().plan
    start = {k: torch.full_like(v, 0.01) for k, v in build_network(plan).state_dict().items()}
    starting = str(tmp_path / "starting.pt")
    publish([Weights(start, {"run_id": "shipped", "trained_on": []}, starting)], plan, [SEGMENTATION])
    config: AppConfig = make_config(checkpoint=starting, finetune_learning_rate="0.05", **fast)
    published, last = SEGMENTATION.published_path(config.model_dir), SEGMENTATION.last_path(config.model_dir)
    studies = labelled_studies(tmp_path, 3)

    first = run(config, studies)["networks"]["segmentation"]
    assert (
        first["published"] is False and "3 labelled case(s), fewer than finetune_min_labels (4)" in first["held_back"]
    )
    assert not os.path.exists(published)  # the starting model stays served
    assert read_checkpoint(last, plan)[1]["kept_serving"] == "shipped"
    trained = first_tensor(last, config)
    assert not torch.allclose(trained, torch.full_like(trained, 0.01))

    # The next held-back run continues from those final weights, not from the starting model.
    run(make_config(checkpoint=starting, finetune_learning_rate="1e-9", **fast), studies)
    torch.testing.assert_close(first_tensor(last, config), trained, atol=1e-5, rtol=0)

    write_case(studies, "case3", seed=3, label_folder=os.path.join(studies, "labels", "final"))
    fourth = run(config, studies)["networks"]["segmentation"]
    assert fourth["published"] is True and "held_back" not in fourth
    assert read_checkpoint(published, plan)[1]["starting_model"] == "starting.pt"

    # Weights trained from scratch replace what is served from the first label.
    scratch = make_config(checkpoint="none", model_dir=str(tmp_path / "scratch"), **fast)
    assert run(scratch, labelled_studies(tmp_path / "one", 1))["networks"]["segmentation"]["published"] is True
    assert os.path.exists(SEGMENTATION.published_path(scratch.model_dir))
