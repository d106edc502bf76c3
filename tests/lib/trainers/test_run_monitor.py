"""Live training stats for 3D Slicer and publishing of the best weights when a run completes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from lib.checkpoint import read_checkpoint
from lib.config import TumorConfig
from lib.networks import build_network
from lib.trainers.run_monitor import (
    TRAIN_DICE,
    VAL_DICE,
    VAL_DICE_LARGEST_PER_LABEL,
    VAL_DICE_PER_LABEL,
    RunMonitor,
    write_json,
)


def test_write_json_replaces_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "stats" / "train_stats.json"
    write_json(str(path), {"status": "RUNNING", "epoch": 1})
    write_json(str(path), {"status": "DONE", "epoch": 2})

    assert json.loads(path.read_text()) == {"status": "DONE", "epoch": 2}
    assert [p.name for p in path.parent.iterdir()] == ["train_stats.json"]


def first_weight(network: torch.nn.Module) -> torch.Tensor:
    return next(iter(network.state_dict().values()))


def make_trainer(network: torch.nn.Module) -> Engine:
    """A trainer whose every iteration writes the epoch number into the first weight tensor, so the published
    weights tell which epoch they come from."""

    def step(engine: Engine, batch: object) -> list[dict[str, torch.Tensor]]:
        with torch.no_grad():
            first_weight(network).fill_(float(engine.state.epoch))
        return [{"loss": torch.tensor(1.0 / engine.state.epoch)}]

    return Engine(step)


class Evaluator(Engine):
    """Runs like MONAI's evaluator: ``run(global_epoch)``, one pass over one batch."""

    def run(self, global_epoch: object = 1) -> None:  # type: ignore[override]
        super().run([0], max_epochs=1)


def make_evaluator(dice: list[float], labels: int, largest: list[list[float]] | None = None) -> Engine:
    """An evaluator reporting ``dice[n - 1]`` as mean Dice (and per label) at its n-th run, and ``largest[n - 1]``
    as the per-label Dice with only the largest components kept (when given)."""
    evaluator = Evaluator(lambda engine, batch: None)
    runs = iter(dice)
    post = iter(largest or [])

    @evaluator.on(Events.EPOCH_COMPLETED)
    def report(engine: Engine) -> None:
        value = next(runs)
        engine.state.metrics[VAL_DICE] = value
        engine.state.metrics[VAL_DICE_PER_LABEL] = torch.full((labels,), value)
        if largest is not None:
            engine.state.metrics[VAL_DICE_LARGEST_PER_LABEL] = torch.tensor(next(post))

    return evaluator


@pytest.fixture
def stats_path(tmp_path: Path) -> Path:
    return tmp_path / "model" / "train_stats.json"


def test_stats_running_has_progress_but_no_total_time(config: TumorConfig, stats_path: Path) -> None:
    network = build_network(config)
    trainer = make_trainer(network)
    monitor = RunMonitor(config, network, str(stats_path), "run-1", {"train": 1, "val": 0})
    monitor.attach(trainer, None)
    seen: list[dict[str, object]] = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: seen.append(json.loads(stats_path.read_text())))

    trainer.run([0], max_epochs=2)

    assert [s["status"] for s in seen] == ["RUNNING", "RUNNING"]
    assert [s["epoch"] for s in seen] == [1, 2]
    for stats in seen:
        assert stats["total_epochs"] == 2
        assert "best_metric" in stats
        assert "total_time" not in stats
        assert stats["run_id"] == "run-1"
        assert stats["validated"] == TRAIN_DICE
    assert seen[1]["train_loss"] == pytest.approx(0.5)


def test_stats_done_has_total_time(config: TumorConfig, stats_path: Path) -> None:
    network = build_network(config)
    trainer = make_trainer(network)
    monitor = RunMonitor(config, network, str(stats_path), "run-1", {"train": 1, "val": 0})
    monitor.attach(trainer, None)

    trainer.run([0], max_epochs=2)

    final = json.loads(stats_path.read_text())
    assert final["status"] == "DONE"
    assert "total_time" in final and "current_time" not in final
    assert (final["epoch"], final["total_epochs"]) == (2, 2)
    assert "total_time" not in monitor.stats("RUNNING")
    assert "total_time" in monitor.stats("DONE")


def test_stats_before_start(config: TumorConfig, stats_path: Path) -> None:
    monitor = RunMonitor(config, build_network(config), str(stats_path), "run-0", {"train": 2, "val": 1})
    stats = monitor.stats("RUNNING")
    assert (stats["epoch"], stats["total_epochs"], stats["best_metric"]) == (0, 0, 0.0)
    assert stats["validated"] == VAL_DICE
    assert "total_time" not in stats


def test_completed_run_without_validation_publishes_last_weights(config: TumorConfig, stats_path: Path) -> None:
    network = build_network(config)
    trainer = make_trainer(network)
    RunMonitor(config, network, str(stats_path), "run-1", {"train": 1, "val": 0}).attach(trainer, None)

    trainer.run([0], max_epochs=2)

    state, meta = read_checkpoint(config.published_path(), config)
    assert meta["run_id"] == "run-1"
    assert meta["epoch"] == 2
    assert meta["cases"] == {"train": 1, "val": 0}
    assert meta["keep_largest"] == []  # no validation to decide the post-processing on
    assert torch.all(next(iter(state.values())) == 2.0)
    build_network(config).load_state_dict(state, strict=True)


def test_completed_run_publishes_best_validated_weights(
    make_config: Callable[..., TumorConfig], stats_path: Path
) -> None:
    config = make_config(labels="tumor,edema")
    network = build_network(config)
    trainer = make_trainer(network)
    evaluator = make_evaluator([0.3, 0.7, 0.5], labels=2)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))  # validation before the monitor
    RunMonitor(config, network, str(stats_path), "run-2", {"train": 3, "val": 3}).attach(trainer, evaluator)

    trainer.run([0], max_epochs=3)

    state, meta = read_checkpoint(config.published_path(), config)
    assert meta["run_id"] == "run-2"
    assert meta["epoch"] == 2
    assert meta["val_dice"] == pytest.approx(0.7)
    assert meta["dice_per_label"] == pytest.approx({"tumor": 0.7, "edema": 0.7})
    assert torch.all(next(iter(state.values())) == 2.0)  # the weights of epoch 2, not the last epoch's
    final = json.loads(stats_path.read_text())
    assert final["status"] == "DONE"
    assert final["best_metric"] == pytest.approx(0.7)
    assert final["best_metric_epoch"] == 2


def test_largest_component_is_kept_for_the_labels_whose_validation_it_improves(
    make_config: Callable[..., TumorConfig], stats_path: Path
) -> None:
    """The published epoch is chosen on the network's Dice; its own validation decides the post-processing."""
    config = make_config(labels="tumor,edema")
    network = build_network(config)
    trainer = make_trainer(network)
    # epoch 1: post-processing would win everywhere, but the epoch loses; epoch 2 (best): it raises tumour's Dice
    # and leaves edema's equal; epoch 3 loses.
    evaluator = make_evaluator([0.3, 0.7, 0.5], labels=2, largest=[[0.9, 0.9], [0.8, 0.7], [0.5, 0.5]])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    RunMonitor(config, network, str(stats_path), "run-2", {"train": 3, "val": 3}).attach(trainer, evaluator)

    trainer.run([0], max_epochs=3)

    _, meta = read_checkpoint(config.published_path(), config)
    assert meta["epoch"] == 2
    assert meta["keep_largest"] == ["tumor"]
    assert meta["val_dice"] == pytest.approx(0.7)
    assert meta["val_dice_postprocessed"] == pytest.approx(0.75)
    final = json.loads(stats_path.read_text())
    assert final["keep_largest"] == ["tumor"]
    assert final["val_dice_postprocessed"] == pytest.approx(0.75)


def test_crashed_run_publishes_nothing(config: TumorConfig, stats_path: Path) -> None:
    network = build_network(config)

    def step(engine: Engine, batch: object) -> None:
        if engine.state.epoch == 2:
            raise RuntimeError("out of memory")

    trainer = Engine(step)
    RunMonitor(config, network, str(stats_path), "run-3", {"train": 1, "val": 0}).attach(trainer, None)

    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.run([0], max_epochs=3)

    assert not Path(config.published_path()).exists()
    assert json.loads(stats_path.read_text())["status"] == "RUNNING"


class Clock:
    """A settable ``time.time`` stand-in; the tests advance it by ``epoch_s`` at every training iteration."""

    def __init__(self, epoch_s: float) -> None:
        self.now = 1000.0
        self.epoch_s = epoch_s

    def __call__(self) -> float:
        return self.now


def clocked_trainer(config: TumorConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[Clock, torch.nn.Module, Engine]:
    """A network, its trainer (one iteration per epoch) and a clock that every iteration moves 10 s on."""
    clock = Clock(epoch_s=10.0)
    monkeypatch.setattr("lib.trainers.run_monitor.time.time", clock)
    network = build_network(config)
    trainer = make_trainer(network)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: setattr(clock, "now", clock.now + clock.epoch_s))
    return clock, network, trainer


def test_run_stops_after_the_last_epoch_that_fits_its_deadline(
    config: TumorConfig, stats_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    # 35 s of budget for 10 s epochs: epochs 1-3 end at 10, 20, 30 s; a 4th would end at 40 s, past the deadline.
    RunMonitor(config, network, str(stats_path), "run-5", {"train": 1, "val": 0}, deadline=clock.now + 35).attach(
        trainer, None
    )

    trainer.run([0], max_epochs=10)

    assert trainer.state.epoch == 3
    _, meta = read_checkpoint(config.published_path(), config)
    assert meta["run_id"] == "run-5" and meta["epoch"] == 3  # a budget-ended run completes and publishes
    final = json.loads(stats_path.read_text())
    assert final["status"] == "DONE" and final["stopped_by_time_budget"] is True
    assert final["seconds_per_epoch"] == pytest.approx(10.0)  # what a 4th epoch was predicted to take


def test_one_slow_epoch_does_not_end_the_run_early(config: TumorConfig, stats_path: Path, monkeypatch) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    # The first epoch takes 60 s (another job shared the CPU), the next ones 10 s; 200 s of budget.
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda e: setattr(clock, "epoch_s", 60.0 if e.state.epoch == 1 else 10.0)
    )
    RunMonitor(config, network, str(stats_path), "run-9", {"train": 1, "val": 0}, deadline=clock.now + 200).attach(
        trainer, None
    )

    trainer.run([0], max_epochs=20)

    # Epochs end at 60, 70, ..., 200 s: a 16th, predicted from the last three (10 s), would end at 210 s. Predicted
    # from the slowest epoch (60 s), the run would have stopped after the 10th, at 150 s.
    assert trainer.state.epoch == 15


def test_run_within_its_deadline_runs_every_epoch(config: TumorConfig, stats_path: Path, monkeypatch) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    RunMonitor(config, network, str(stats_path), "run-6", {"train": 1, "val": 0}, deadline=clock.now + 1).attach(
        trainer, None
    )

    trainer.run([0], max_epochs=1)  # one epoch always runs, even past the deadline

    assert trainer.state.epoch == 1 and Path(config.published_path()).is_file()
    assert json.loads(stats_path.read_text())["stopped_by_time_budget"] is False


def served_weights(network: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    """The network's weights with the first tensor filled with ``value``, so tests can tell them apart."""
    state = {k: v.clone() for k, v in network.state_dict().items()}
    next(iter(state.values())).fill_(value)
    return state


def test_fine_tuning_run_keeps_the_served_weights_when_no_epoch_validates_better(
    config: TumorConfig, stats_path: Path
) -> None:
    network = build_network(config)
    first_weight(network).fill_(-7.0)  # the previous run's final weights, which this run continues from
    served = served_weights(network, -1.0)
    trainer = make_trainer(network)
    evaluator = make_evaluator([0.6, 0.3, 0.5], labels=1)  # the served weights, then epochs 1 and 2
    validated: list[float] = []
    evaluator.add_event_handler(Events.STARTED, lambda _: validated.append(float(first_weight(network).flatten()[0])))
    starts: list[float] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: starts.append(float(first_weight(network).flatten()[0])))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    monitor = RunMonitor(
        config, network, str(stats_path), "run-7", {"train": 3, "val": 3}, served=(served, ["a"]), trained_on=["a", "b"]
    )
    monitor.attach(trainer, evaluator)

    trainer.run([0], max_epochs=2)

    assert validated == [-1.0, 1.0, 2.0]  # epoch 0 validated the served weights...
    assert starts[0] == -7.0  # ...and training went on from the weights the run started from
    state, meta = read_checkpoint(config.published_path(), config)
    assert meta["run_id"] == "run-7" and meta["epoch"] == 0 and meta["val_dice"] == pytest.approx(0.6)
    assert meta["trained_on"] == ["a"]  # the served weights' own record
    assert torch.all(next(iter(state.values())) == -1.0)  # the served weights, not epoch 2's
    last, last_meta = read_checkpoint(config.last_path(), config)
    assert torch.all(next(iter(last.values())) == 2.0)  # the next run continues from this run's final weights
    assert last_meta == {"run_id": "run-7", "epoch": 2, "trained_on": ["a", "b"], "architecture": config.architecture()}
    final = json.loads(stats_path.read_text())
    assert final["best_metric_epoch"] == 0 and final["start_metric"] == pytest.approx(0.6)


def two_epochs_with_served_weights(
    config: TumorConfig, stats_path: Path, dice: list[float], validation_cases: int
) -> None:
    """A two-epoch fine-tuning run on cases a and b whose served weights (first tensor -1) trained on a; the
    evaluator reports ``dice`` in turn (the served weights first, when they are validated)."""
    network = build_network(config)
    trainer = make_trainer(network)
    evaluator = make_evaluator(dice, labels=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    cases = {"train": 3, "val": validation_cases}
    served = (served_weights(network, -1.0), ["a"])
    RunMonitor(config, network, str(stats_path), "run", cases, served=served, trained_on=["a", "b"]).attach(
        trainer, evaluator
    )
    trainer.run([0], max_epochs=2)


def test_fine_tuning_run_publishes_an_epoch_that_validates_better_than_the_served_weights(
    config: TumorConfig, stats_path: Path
) -> None:
    two_epochs_with_served_weights(config, stats_path, [0.4, 0.3, 0.5], validation_cases=3)

    state, meta = read_checkpoint(config.published_path(), config)
    assert meta["epoch"] == 2 and meta["val_dice"] == pytest.approx(0.5) and meta["trained_on"] == ["a", "b"]
    assert torch.all(next(iter(state.values())) == 2.0)


def test_run_with_too_few_validation_cases_publishes_its_final_weights(config: TumorConfig, stats_path: Path) -> None:
    assert config.min_val_cases == 3
    # Epochs 1 and 2 validate at 0.7 and 0.3; the served weights are not validated.
    two_epochs_with_served_weights(config, stats_path, [0.7, 0.3], validation_cases=2)

    state, meta = read_checkpoint(config.published_path(), config)
    assert meta["epoch"] == 2 and meta["val_dice"] == pytest.approx(0.3)  # the final epoch, not the better first
    assert meta["trained_on"] == ["a", "b"]
    assert torch.all(next(iter(state.values())) == 2.0)
    final = json.loads(stats_path.read_text())
    assert final["best_metric"] == pytest.approx(0.3) and final["best_metric_epoch"] == 2
    assert final["start_metric"] is None


def test_run_whose_server_has_ended_publishes_nothing(
    config: TumorConfig, stats_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifeline ends a server's background process within a second; a run finishing in that second must not
    publish either."""
    monkeypatch.setattr("lib.trainers.run_monitor.server_alive", lambda: False)
    network = build_network(config)
    trainer = make_trainer(network)
    RunMonitor(config, network, str(stats_path), "run-1", {"train": 1, "val": 0}).attach(trainer, None)

    trainer.run([0], max_epochs=2)

    assert not os.path.exists(config.published_path()) and not os.path.exists(config.last_path())
