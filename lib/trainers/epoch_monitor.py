"""Watches one network's training in a run: epoch times, validation, and which weights are the best so far.

A fine-tuning run first validates the served weights ("epoch 0") and keeps the best of those and its own epochs:
a short Auto-Update round cannot replace the served model by one that validates worse. Choosing by validation
needs enough validation cases (``min_val_cases``): on one or two, a case's Dice swings by 0.2-0.3 between epochs,
so a lucky epoch would stay served for many rounds. With fewer, the final weights are kept, as nnU-Net does, with
their validation Dice.

Each validation also decides nnU-Net's post-processing for the weights it validated: the labels whose mean
validation Dice rises when only their largest connected component is kept (``VAL_DICE_LARGEST_PER_LABEL``).

The monitor only observes; the run (:mod:`lib.trainers.run`) decides what is published, and when.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

from lib.checkpoint import Weights
from lib.config import AppConfig
from lib.networks.descriptions import NetworkDescription
from lib.transforms.components import KEEP_LARGEST

logger = logging.getLogger(__name__)

VAL_DICE = "val_mean_dice"
VAL_DICE_PER_LABEL = "val_dice_per_label"
VAL_DICE_LARGEST_PER_LABEL = "val_dice_largest_per_label"  # with each label reduced to its largest component
TRAIN_DICE = "train_mean_dice"
STARTING_MODEL = "starting_model"  # meta: the starting checkpoint a lineage of weights descends from
KEPT_SERVING = "kept_serving"  # final weights' meta: run id of the served weights a run left served


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _number(value: Any) -> float | None:
    value = float(torch.as_tensor(value).float().mean()) if value is not None else None
    return None if value is None or math.isnan(value) else value


def _per_label(names: Sequence[str], values: Any) -> dict[str, float | None]:
    """A per-label metric tensor as ``{label name: value}`` (empty when the metric was not computed)."""
    return {} if values is None else dict(zip(names, map(_number, torch.as_tensor(values).flatten())))


@dataclass(frozen=True)
class PhaseResult:
    """What one network's training produced: the weights to serve and the final weights, not yet published, and
    the run id of the weights served when it started (None: none, or not recorded)."""

    network: NetworkDescription
    best: Weights
    final: Weights
    served_run_id: str | None = None


class EpochMonitor:
    """Observes one network's trainer and evaluator.

    Args:
        app_config: the app configuration.
        network: the description of the network trained.
        module: the network being trained.
        run_id: identifier of the run.
        cases: number of training and validation cases.
        served: the served weights and the cases they trained on, validated before the first epoch ("epoch 0") and
            kept if no epoch beats them; give them only when they never trained on a validation case. Ignored
            with fewer than ``app_config.min_val_cases`` validation cases (the final weights are kept then).
        trained_on: names of the cases this run's weights have trained on, recorded in the checkpoints.
        validated_on: names of the validation cases, recorded in the published checkpoint.
        starting_model: file name of the starting checkpoint this run's weights descend from (None: trained from
            scratch on this server's labels), recorded in both checkpoints as ``starting_model``.
        learning_rate: the run's initial learning rate, reported in its stats.
        on_epoch: called after every epoch (and its validation), e.g. to write the run's stats.
    """

    def __init__(
        self,
        app_config: AppConfig,
        network: NetworkDescription,
        module: nn.Module,
        run_id: str,
        cases: dict[str, int],
        served: tuple[dict[str, torch.Tensor], Sequence[str]] | None = None,
        trained_on: Sequence[str] = (),
        validated_on: Sequence[str] = (),
        starting_model: str | None = None,
        learning_rate: float | None = None,
        on_epoch: Callable[[], None] | None = None,
    ) -> None:
        self.app_config = app_config
        self.network = network
        self.module = module
        self.run_id = run_id
        self.cases = cases
        self.served = served
        self.trained_on = list(trained_on)
        self.validated_on = list(validated_on)
        self.lineage = {STARTING_MODEL: starting_model} if starting_model else {}
        self.learning_rate = learning_rate
        self.on_epoch = on_epoch
        self.trainer: Engine | None = None
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.best_per_label: dict[str, float | None] = {}
        self.best_keep_largest: list[str] = []  # labels post-processed to their largest component
        self.best_postprocessed: float | None = None  # mean validation Dice with that post-processing
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_trained_on = self.trained_on
        self.start_metric: float | None = None  # validation of the served weights
        self.epoch_start = time.time()
        self.epoch_seconds: list[float] = []  # whole epochs, validation included
        self.train_seconds: list[float] = []  # training iterations only
        # Too few validation cases to choose by: keep the final weights.
        self.select_best = cases.get("val", 0) >= app_config.min_val_cases
        if cases.get("val") and not self.select_best:
            logger.info(
                "Run %s: %d validation case(s), fewer than min_val_cases (%d): keeping the final weights of %s",
                run_id,
                cases["val"],
                app_config.min_val_cases,
                network.name,
            )

    def attach(self, trainer: Engine, evaluator: Engine | None) -> None:
        """Register on the engines (after the validation handler, so each epoch sees its validation)."""
        self.trainer = trainer
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        if evaluator is not None:
            evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)
            if self.served is not None and self.select_best:
                trainer.add_event_handler(Events.STARTED, self._validate_served, evaluator)
        else:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._trained_without_validation)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.trainer.state.epoch if self.trainer else 0

    def _validate_served(self, trainer: Engine, evaluator: Engine) -> None:
        """Validate the served weights as "epoch 0", then put back the weights this run trains from."""
        assert self.served is not None
        start = copy.deepcopy(self.module.state_dict())
        self.module.load_state_dict(self.served[0])
        evaluator.run(0)
        self.module.load_state_dict(start)

    def _epoch_started(self, trainer: Engine) -> None:
        self.epoch_start = time.time()

    def _epoch_completed(self, trainer: Engine) -> None:
        self.epoch_seconds.append(time.time() - self.epoch_start)
        self.train_seconds.append(trainer.state.times.get(Events.EPOCH_COMPLETED.name) or 0.0)
        if self.on_epoch is not None:
            self.on_epoch()

    def _keep(self, metric: float | None, per_label: dict[str, float | None], largest: dict[str, float | None]) -> None:
        self.best_metric, self.best_per_label = metric, per_label
        # nnU-Net's rule: post-process a label only when that raises its validation Dice.
        post = {name: max(dice, largest.get(name) or 0.0) for name, dice in per_label.items() if dice is not None}
        self.best_keep_largest = [name for name, dice in per_label.items() if dice is not None and post[name] > dice]
        self.best_postprocessed = sum(post.values()) / len(post) if self.best_keep_largest else metric
        self.best_epoch = self.epoch
        served = self.served is not None and self.best_epoch == 0
        self.best_trained_on = list(self.served[1]) if served else self.trained_on
        self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.module.state_dict().items()})

    def _validated(self, evaluator: Engine) -> None:
        metrics = evaluator.state.metrics
        names = self.network.output_names(self.app_config.plan)
        named = _per_label(names, metrics.get(VAL_DICE_PER_LABEL))
        largest = _per_label(names, metrics.get(VAL_DICE_LARGEST_PER_LABEL))
        metric = _number(metrics.get(VAL_DICE))
        if self.epoch == 0:
            self.start_metric = metric
        better = metric is not None and (self.best_metric is None or metric > self.best_metric)
        if not self.select_best or self.best_state is None or better:
            self._keep(metric, named, largest)

    def _trained_without_validation(self, trainer: Engine) -> None:
        # One labelled case: nothing to validate on, so the latest weights are the ones to keep.
        self._keep(_number(trainer.state.metrics.get(TRAIN_DICE)), {}, {})

    def summary(self) -> dict[str, Any]:
        """This network's part of the run's stats."""
        state = self.trainer.state if self.trainer else None
        return {
            "epoch": self.epoch,
            "total_epochs": state.max_epochs if state else 0,
            "best_metric": self.best_metric,
            "best_metric_epoch": self.best_epoch,
            "start_metric": self.start_metric,
            "validated": VAL_DICE if self.cases.get("val") else TRAIN_DICE,
            "dice_per_label": self.best_per_label,
            KEEP_LARGEST: self.best_keep_largest,
            "val_dice_postprocessed": self.best_postprocessed,
            "cases": self.cases,
            "learning_rate": self.learning_rate,
            **self.lineage,
            "seconds_per_epoch": _mean(self.epoch_seconds),
            "train_seconds_per_epoch": _mean(self.train_seconds),
            "train_loss": _number(state.output[0]["loss"]) if state and isinstance(state.output, list) else None,
        }

    def result(self) -> PhaseResult | None:
        """The weights to publish (best, and final) when the network's training completes; None without any."""
        if self.best_state is None:
            return None
        model_dir = self.app_config.model_dir
        # Without validation cases the kept weights' figure is their training Dice, and is named so.
        dice_key = "val_dice" if self.cases.get("val") else "train_dice"
        meta = {
            "run_id": self.run_id,
            "published": datetime.datetime.now().isoformat(timespec="seconds"),
            dice_key: self.best_metric,
            "dice_per_label": self.best_per_label,
            KEEP_LARGEST: self.best_keep_largest,
            "val_dice_postprocessed": self.best_postprocessed,
            "epoch": self.best_epoch,
            "cases": self.cases,
            "trained_on": self.best_trained_on,
            "validated_on": self.validated_on,
            **self.lineage,
        }
        final_meta = {"run_id": self.run_id, "epoch": self.epoch, "trained_on": self.trained_on, **self.lineage}
        final_state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        return PhaseResult(
            self.network,
            best=Weights(self.best_state, meta, self.network.published_path(model_dir)),
            final=Weights(final_state, final_meta, self.network.last_path(model_dir)),
        )
