"""Progress reporting and publishing for one training run.

3D Slicer polls ``/info`` while a run is going and draws ``epoch / total_epochs`` and ``best_metric``; it shows
~0% whenever ``total_time`` is present, so that key is written only when the run has finished. The best weights
are kept in memory and published (atomically) only when the run completes: a stopped, crashed or killed run
leaves the previously served weights untouched. A run with a deadline (the ``train_minutes`` budget) ends after
the last epoch that fits before it, and completes normally.

A fine-tuning run first validates the served weights ("epoch 0") and publishes the best of those and its own
epochs: a short Auto-Update round cannot replace the served model by one that validates worse. Choosing by
validation needs enough validation cases (``min_val_cases``): on one or two, a case's Dice swings by 0.2-0.3 between
epochs, so a lucky epoch would stay served for many rounds. With fewer, the run publishes its final weights, as
nnU-Net does, and reports their validation Dice. The run's final
weights are kept too (``last_path``), tagged with the run id of the published ones: the next run continues from
them, so successive short rounds build on each other even while the served weights stay the same.

Each validation also decides nnU-Net's post-processing for the weights it validated: the labels whose mean
validation Dice rises when only their largest connected component is kept (``VAL_DICE_LARGEST_PER_LABEL``). The
published checkpoint lists them under ``keep_largest`` and inference applies it to those labels only.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch import nn

from lib.checkpoint import publish_checkpoint
from lib.config import SEGMENTATION, TumorConfig
from lib.server.lifeline import server_alive
from lib.transforms.components import KEEP_LARGEST

logger = logging.getLogger(__name__)

VAL_DICE = "val_mean_dice"
VAL_DICE_PER_LABEL = "val_dice_per_label"
VAL_DICE_LARGEST_PER_LABEL = "val_dice_largest_per_label"  # with each label reduced to its largest component
TRAIN_DICE = "train_mean_dice"
PREDICTING_EPOCHS = 3  # the slowest of the last epochs predicts the next one's length


def write_json(path: str, content: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``content`` as JSON (the server reads it while the run writes it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stats-", suffix=".json", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, path)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _per_label(names: Sequence[str], values: Any) -> dict[str, float | None]:
    """A per-label metric tensor as ``{label name: value}`` (empty when the metric was not computed)."""
    return {} if values is None else dict(zip(names, map(_number, torch.as_tensor(values).flatten())))


def _number(value: Any) -> float | None:
    value = float(torch.as_tensor(value).float().mean()) if value is not None else None
    return None if value is None or math.isnan(value) else value


class RunMonitor:
    """Writes live training stats and publishes the best weights when the run completes.

    Args:
        config: the app configuration.
        network: the network being trained.
        stats_path: the stats file read by ``/info``.
        run_id: identifier of this run.
        cases: number of training and validation cases.
        model: which of the app's networks is trained (segmentation or clicks).
        deadline: ``time.time()`` by which the run must end (None: run all epochs). The run stops after an epoch
            when one more epoch, as long as the slowest of the last ``PREDICTING_EPOCHS``, would end past it; at
            least one epoch runs. Only recent epochs predict the next, so one epoch slowed by a job that shared
            the CPU for a while does not end the run early.
        served: the served weights and the cases they trained on, validated before the first epoch ("epoch 0") and
            published again if no epoch beats them; give them only when they never trained on a validation case.
            Ignored when there are fewer than ``config.min_val_cases`` validation cases (the final weights are
            published then).
        trained_on: names of the cases this run's weights have trained on, recorded in the checkpoints.
        validated_on: names of the validation cases, recorded in the published checkpoint.
    """

    def __init__(
        self,
        config: TumorConfig,
        network: nn.Module,
        stats_path: str,
        run_id: str,
        cases: dict[str, int],
        model: str = SEGMENTATION,
        deadline: float | None = None,
        served: tuple[dict[str, torch.Tensor], Sequence[str]] | None = None,
        trained_on: Sequence[str] = (),
        validated_on: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.model = model
        self.network = network
        self.stats_path = stats_path
        self.run_id = run_id
        self.cases = cases
        self.start = time.time()
        self.best_metric: float | None = None
        self.best_epoch = 0
        self.best_per_label: dict[str, float | None] = {}
        self.best_keep_largest: list[str] = []  # labels post-processed to their largest component
        self.best_postprocessed: float | None = None  # mean validation Dice with that post-processing
        self.best_state: dict[str, torch.Tensor] | None = None
        self.trainer: Engine | None = None
        self.deadline = deadline
        self.served = served
        self.trained_on = list(trained_on)
        self.best_trained_on = self.trained_on
        self.validated_on = list(validated_on)
        # Too few validation cases to choose by: publish the final weights.
        self.select_best = cases.get("val", 0) >= config.min_val_cases
        if cases.get("val") and not self.select_best:
            logger.info(
                "Run %s: %d validation case(s), fewer than min_val_cases (%d): publishing the final weights",
                run_id,
                cases["val"],
                config.min_val_cases,
            )
        self.start_metric: float | None = None  # validation of the starting weights of a fine-tuning run
        self.epoch_start = self.start
        self.epoch_seconds: list[float] = []  # whole epochs, validation included
        self.train_seconds: list[float] = []  # training iterations only
        self.stopped_early = False

    def attach(self, trainer: Engine, evaluator: Engine | None) -> None:
        """Register on the engines (after the validation handler, so each epoch sees its validation)."""
        self.trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._write, "RUNNING")
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        if evaluator is not None:
            evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)
            if self.served is not None and self.select_best:
                trainer.add_event_handler(Events.STARTED, self._validate_served, evaluator)
        else:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._trained_without_validation)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._stop_before_deadline)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._write, "RUNNING")
        trainer.add_event_handler(Events.COMPLETED, self._completed)

    def _validate_served(self, trainer: Engine, evaluator: Engine) -> None:
        """Validate the served weights as "epoch 0", then put back the weights this run trains from."""
        assert self.served is not None
        start = copy.deepcopy(self.network.state_dict())
        self.network.load_state_dict(self.served[0])
        evaluator.run(0)
        self.network.load_state_dict(start)

    def _epoch_started(self, trainer: Engine) -> None:
        self.epoch_start = time.time()

    def _stop_before_deadline(self, trainer: Engine) -> None:
        now = time.time()
        self.epoch_seconds.append(now - self.epoch_start)
        self.train_seconds.append(trainer.state.times.get(Events.EPOCH_COMPLETED.name) or 0.0)
        more = trainer.state.epoch < trainer.state.max_epochs
        next_epoch = max(self.epoch_seconds[-PREDICTING_EPOCHS:])
        if self.deadline is not None and more and now + next_epoch > self.deadline:
            logger.info(
                "Run %s: stopping after epoch %d of %d, the next would pass the time budget",
                self.run_id,
                trainer.state.epoch,
                trainer.state.max_epochs,
            )
            self.stopped_early = True
            trainer.terminate()

    def _keep(self, metric: float | None, per_label: dict[str, float | None], largest: dict[str, float | None]) -> None:
        self.best_metric, self.best_per_label = metric, per_label
        # nnU-Net's rule: post-process a label only when that raises its validation Dice.
        post = {name: max(dice, largest.get(name) or 0.0) for name, dice in per_label.items() if dice is not None}
        self.best_keep_largest = [name for name, dice in per_label.items() if dice is not None and post[name] > dice]
        self.best_postprocessed = sum(post.values()) / len(post) if self.best_keep_largest else metric
        self.best_epoch = self.trainer.state.epoch if self.trainer else 0
        served = self.served is not None and self.best_epoch == 0
        self.best_trained_on = list(self.served[1]) if served else self.trained_on
        self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.network.state_dict().items()})

    def _keep_if_best(
        self, metric: float | None, per_label: dict[str, float | None], largest: dict[str, float | None]
    ) -> None:
        if self.best_state is None or (metric is not None and (self.best_metric is None or metric > self.best_metric)):
            self._keep(metric, per_label, largest)

    def _validated(self, evaluator: Engine) -> None:
        metrics = evaluator.state.metrics
        names = self.config.labels if self.model == SEGMENTATION else ("clicked object",)
        named = _per_label(names, metrics.get(VAL_DICE_PER_LABEL))
        largest = _per_label(names, metrics.get(VAL_DICE_LARGEST_PER_LABEL))
        if self.trainer is not None and self.trainer.state.epoch == 0:
            self.start_metric = _number(metrics.get(VAL_DICE))
        if self.select_best:
            self._keep_if_best(_number(metrics.get(VAL_DICE)), named, largest)
        else:
            self._keep(_number(metrics.get(VAL_DICE)), named, largest)

    def _trained_without_validation(self, trainer: Engine) -> None:
        # One labelled case: nothing to validate on, so the latest weights are the ones to publish.
        self._keep(_number(trainer.state.metrics.get(TRAIN_DICE)), {}, {})

    def stats(self, status: str) -> dict[str, Any]:
        """The stats document for ``/info`` (``train_stats``)."""
        state = self.trainer.state if self.trainer else None
        elapsed = str(datetime.timedelta(seconds=int(time.time() - self.start)))
        stats: dict[str, Any] = {
            "status": status,
            "run_id": self.run_id,
            "pid": os.getpid(),
            "niceness": os.getpriority(os.PRIO_PROCESS, 0),
            "start_ts": int(self.start),
            "epoch": state.epoch if state else 0,
            "total_epochs": state.max_epochs if state else 0,
            "best_metric": self.best_metric or 0.0,
            "best_metric_epoch": self.best_epoch,
            "start_metric": self.start_metric,
            "validated": VAL_DICE if self.cases.get("val") else TRAIN_DICE,
            "dice_per_label": self.best_per_label,
            KEEP_LARGEST: self.best_keep_largest,
            "val_dice_postprocessed": self.best_postprocessed,
            "cases": self.cases,
            "stopped_by_time_budget": self.stopped_early,
            "seconds_per_epoch": _mean(self.epoch_seconds),
            "train_seconds_per_epoch": _mean(self.train_seconds),
            "train_loss": _number(state.output[0]["loss"]) if state and isinstance(state.output, list) else None,
        }
        stats["total_time" if status == "DONE" else "current_time"] = elapsed
        return stats

    def _write(self, engine: Engine, status: str) -> None:
        write_json(self.stats_path, self.stats(status))

    def _completed(self, trainer: Engine) -> None:
        if not server_alive():
            logger.error("Run %s: the server that started it has ended; nothing is published", self.run_id)
            return
        if self.best_state is None:
            logger.warning("Run %s finished without weights to publish", self.run_id)
            return
        meta = {
            "run_id": self.run_id,
            "published": datetime.datetime.now().isoformat(timespec="seconds"),
            "val_dice": self.best_metric,
            "dice_per_label": self.best_per_label,
            KEEP_LARGEST: self.best_keep_largest,
            "val_dice_postprocessed": self.best_postprocessed,
            "epoch": self.best_epoch,
            "cases": self.cases,
            "trained_on": self.best_trained_on,
            "validated_on": self.validated_on,
        }
        publish_checkpoint(self.best_state, meta, self.config.published_path(self.model), self.config, self.model)
        final = {"run_id": self.run_id, "epoch": trainer.state.epoch, "trained_on": self.trained_on}
        publish_checkpoint(self.network.state_dict(), final, self.config.last_path(self.model), self.config, self.model)
        write_json(self.stats_path, self.stats("DONE"))
