"""What the epoch monitor keeps of one network's training (best weights, validation, post-processing), and the
deadline that ends training after the last epoch that fits."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from lib.trainers.deadline import StopBeforeDeadline
from lib.trainers.epoch_monitor import (
    TRAIN_DICE,
    VAL_DICE,
    VAL_DICE_LARGEST_PER_LABEL,
    VAL_DICE_PER_LABEL,
    EpochMonitor,
)


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


def monitor_of(
    config: AppConfig, network: torch.nn.Module, run_id: str, cases: dict[str, int], **kwargs
) -> EpochMonitor:
    return EpochMonitor(config, SEGMENTATION, network, run_id, cases, **kwargs)


def test_summary_after_each_epoch_has_progress_and_the_loss(config: AppConfig) -> None:
    network = build_network(config.plan)
    trainer = make_trainer(network)
    seen: list[dict[str, object]] = []
    monitor = monitor_of(
        config, network, "run-1", {"train": 1, "val": 0}, on_epoch=lambda: seen.append(monitor.summary())
    )
    monitor.attach(trainer, None)

    trainer.run([0], max_epochs=2)

    assert [(s["epoch"], s["total_epochs"]) for s in seen] == [(1, 2), (2, 2)]
    assert all(s["validated"] == TRAIN_DICE for s in seen)
    assert seen[1]["train_loss"] == pytest.approx(0.5)
    assert seen[1]["seconds_per_epoch"] is not None


def test_weights_kept_without_validation_cases_record_their_training_dice_as_such(config: AppConfig) -> None:
    network = build_network(config.plan)
    trainer = make_trainer(network)
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update({TRAIN_DICE: 0.1 * e.state.epoch})
    )
    monitor = monitor_of(config, network, "run-9", {"train": 20, "val": 0})
    monitor.attach(trainer, None)

    trainer.run([0], max_epochs=3)

    meta = monitor.result().best.meta
    assert meta["train_dice"] == pytest.approx(0.3) and meta["epoch"] == 3
    assert "val_dice" not in meta  # nothing was validated: no figure may read as a validation Dice


def test_summary_before_start(config: AppConfig) -> None:
    summary = monitor_of(config, build_network(config.plan), "run-0", {"train": 2, "val": 1}).summary()
    assert (summary["epoch"], summary["total_epochs"], summary["best_metric"]) == (0, 0, None)
    assert summary["validated"] == VAL_DICE


def test_without_validation_the_last_weights_are_kept(config: AppConfig) -> None:
    network = build_network(config.plan)
    trainer = make_trainer(network)
    monitor = monitor_of(config, network, "run-1", {"train": 1, "val": 0})
    monitor.attach(trainer, None)

    trainer.run([0], max_epochs=2)

    result = monitor.result()
    assert result.best.meta["run_id"] == "run-1" and result.best.meta["epoch"] == 2
    assert result.best.meta["cases"] == {"train": 1, "val": 0}
    assert result.best.meta["keep_largest"] == []  # no validation to decide the post-processing on
    assert torch.all(next(iter(result.best.state.values())) == 2.0)
    assert result.best.path == SEGMENTATION.published_path(config.model_dir)
    assert result.final.path == SEGMENTATION.last_path(config.model_dir)
    build_network(config.plan).load_state_dict(result.best.state, strict=True)


def test_the_best_validated_weights_are_kept(config: AppConfig) -> None:
    network = build_network(config.plan)
    trainer = make_trainer(network)
    evaluator = make_evaluator([0.4, 0.7, 0.5], labels=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    monitor = monitor_of(config, network, "run-2", {"train": 3, "val": 3})
    monitor.attach(trainer, evaluator)

    trainer.run([0], max_epochs=3)

    result = monitor.result()
    assert result.best.meta["epoch"] == 2 and result.best.meta["val_dice"] == pytest.approx(0.7)
    assert torch.all(next(iter(result.best.state.values())) == 2.0)
    assert torch.all(next(iter(result.final.state.values())) == 3.0) and result.final.meta["epoch"] == 3
    assert monitor.summary()["best_metric_epoch"] == 2


def test_largest_component_is_kept_for_the_labels_whose_validation_it_improves(make_config) -> None:
    config = make_config(labels="tumor,edema")
    network = build_network(config.plan)
    trainer = make_trainer(network)
    # Epoch 1: 0.6 per label, keeping the largest component: tumour 0.8, edema 0.5. Epoch 2: 0.7; 0.8 and 0.7.
    evaluator = make_evaluator([0.6, 0.7], labels=2, largest=[[0.8, 0.5], [0.8, 0.7]])
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    monitor = monitor_of(config, network, "run-4", {"train": 3, "val": 3})
    monitor.attach(trainer, evaluator)

    trainer.run([0], max_epochs=2)

    meta = monitor.result().best.meta
    assert meta["epoch"] == 2
    assert meta["keep_largest"] == ["tumor"]
    assert meta["val_dice"] == pytest.approx(0.7)
    assert meta["val_dice_postprocessed"] == pytest.approx(0.75)
    assert monitor.summary()["keep_largest"] == ["tumor"]


def test_a_crashed_network_has_no_result_beyond_its_epochs(config: AppConfig) -> None:
    network = build_network(config.plan)

    def step(engine: Engine, batch: object) -> None:
        if engine.state.epoch == 1:
            raise RuntimeError("out of memory")

    trainer = Engine(step)
    monitor = monitor_of(config, network, "run-3", {"train": 1, "val": 0})
    monitor.attach(trainer, None)

    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.run([0], max_epochs=3)

    assert monitor.result() is None


class Clock:
    """A settable ``time.time`` stand-in; the tests advance it by ``epoch_s`` at every training iteration."""

    def __init__(self, epoch_s: float) -> None:
        self.now = 1000.0
        self.epoch_s = epoch_s

    def __call__(self) -> float:
        return self.now


def clocked_trainer(config: AppConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[Clock, torch.nn.Module, Engine]:
    """A network, its trainer (one iteration per epoch) and a clock that every iteration moves on."""
    clock = Clock(epoch_s=10.0)
    monkeypatch.setattr("lib.trainers.deadline.time.time", clock)
    network = build_network(config.plan)
    trainer = make_trainer(network)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: setattr(clock, "now", clock.now + clock.epoch_s))
    return clock, network, trainer


def test_training_stops_after_the_last_epoch_that_fits_its_deadline(config: AppConfig, monkeypatch) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    # 35 s of budget for 10 s epochs: epochs 1-3 end at 10, 20, 30 s; a 4th would end at 40 s, past the deadline.
    deadline = StopBeforeDeadline(clock.now + 35)
    deadline.attach(trainer)

    trainer.run([0], max_epochs=10)

    assert trainer.state.epoch == 3 and deadline.stopped
    assert deadline.epoch_seconds == [10.0, 10.0, 10.0]


def test_one_slow_epoch_does_not_end_training_early(config: AppConfig, monkeypatch) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    # The first epoch takes 60 s (another job shared the CPU), the next ones 10 s; 200 s of budget.
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda e: setattr(clock, "epoch_s", 60.0 if e.state.epoch == 1 else 10.0)
    )
    StopBeforeDeadline(clock.now + 200).attach(trainer)

    trainer.run([0], max_epochs=20)

    # Epochs end at 60, 70, ..., 200 s: a 16th, predicted from the last three (10 s), would end at 210 s. Predicted
    # from the slowest epoch (60 s), training would have stopped after the 10th, at 150 s.
    assert trainer.state.epoch == 15


def test_one_epoch_always_runs_even_past_the_deadline(config: AppConfig, monkeypatch) -> None:
    clock, network, trainer = clocked_trainer(config, monkeypatch)
    deadline = StopBeforeDeadline(clock.now + 1)
    deadline.attach(trainer)

    trainer.run([0], max_epochs=1)

    assert trainer.state.epoch == 1 and not deadline.stopped


def served_weights(network: torch.nn.Module, value: float) -> dict[str, torch.Tensor]:
    """The network's weights with the first tensor filled with ``value``, so tests can tell them apart."""
    state = {k: v.clone() for k, v in network.state_dict().items()}
    next(iter(state.values())).fill_(value)
    return state


def test_fine_tuning_keeps_the_served_weights_when_no_epoch_validates_better(config: AppConfig) -> None:
    network = build_network(config.plan)
    first_weight(network).fill_(-7.0)  # the previous run's final weights, which this run continues from
    served = served_weights(network, -1.0)
    trainer = make_trainer(network)
    evaluator = make_evaluator([0.6, 0.3, 0.5], labels=1)  # the served weights, then epochs 1 and 2
    validated: list[float] = []
    evaluator.add_event_handler(Events.STARTED, lambda _: validated.append(float(first_weight(network).flatten()[0])))
    starts: list[float] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: starts.append(float(first_weight(network).flatten()[0])))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    monitor = monitor_of(
        config, network, "run-7", {"train": 3, "val": 3}, served=(served, ["a"]), trained_on=["a", "b"]
    )
    monitor.attach(trainer, evaluator)

    trainer.run([0], max_epochs=2)

    assert validated == [-1.0, 1.0, 2.0]  # epoch 0 validated the served weights...
    assert starts[0] == -7.0  # ...and training went on from the weights the run started from
    result = monitor.result()
    meta = result.best.meta
    assert meta["run_id"] == "run-7" and meta["epoch"] == 0 and meta["val_dice"] == pytest.approx(0.6)
    assert meta["trained_on"] == ["a"]  # the served weights' own record
    assert torch.all(next(iter(result.best.state.values())) == -1.0)  # the served weights, not epoch 2's
    assert torch.all(next(iter(result.final.state.values())) == 2.0)  # the next run continues from these
    assert result.final.meta == {"run_id": "run-7", "epoch": 2, "trained_on": ["a", "b"]}
    summary = monitor.summary()
    assert summary["best_metric_epoch"] == 0 and summary["start_metric"] == pytest.approx(0.6)


def two_epochs_with_served_weights(config: AppConfig, dice: list[float], validation_cases: int) -> EpochMonitor:
    """A two-epoch fine-tuning of cases a and b whose served weights (first tensor -1) trained on a; the
    evaluator reports ``dice`` in turn (the served weights first, when they are validated)."""
    network = build_network(config.plan)
    trainer = make_trainer(network)
    evaluator = make_evaluator(dice, labels=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    cases = {"train": 3, "val": validation_cases}
    served = (served_weights(network, -1.0), ["a"])
    monitor = monitor_of(config, network, "run", cases, served=served, trained_on=["a", "b"])
    monitor.attach(trainer, evaluator)
    trainer.run([0], max_epochs=2)
    return monitor


def test_fine_tuning_keeps_an_epoch_that_validates_better_than_the_served_weights(config: AppConfig) -> None:
    best = two_epochs_with_served_weights(config, [0.4, 0.3, 0.5], validation_cases=3).result().best
    assert best.meta["epoch"] == 2 and best.meta["val_dice"] == pytest.approx(0.5)
    assert best.meta["trained_on"] == ["a", "b"]
    assert torch.all(next(iter(best.state.values())) == 2.0)


def test_too_few_validation_cases_keep_the_final_weights(config: AppConfig) -> None:
    assert config.min_val_cases == 3
    # Epochs 1 and 2 validate at 0.7 and 0.3; the served weights are not validated.
    monitor = two_epochs_with_served_weights(config, [0.7, 0.3], validation_cases=2)

    best = monitor.result().best
    assert best.meta["epoch"] == 2 and best.meta["val_dice"] == pytest.approx(0.3)  # final, not the better first
    assert best.meta["trained_on"] == ["a", "b"]
    assert torch.all(next(iter(best.state.values())) == 2.0)
    summary = monitor.summary()
    assert summary["best_metric"] == pytest.approx(0.3) and summary["best_metric_epoch"] == 2
    assert summary["start_metric"] is None
