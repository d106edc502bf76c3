"""One training run: the segmentation network, then the click network, published together when the run completes.

This is the app's only trainer (``POST /train/segmentation``, 3D Slicer's Train button and Auto-Update). The run
owns the sequence of the networks, the split of its time budget between them and the stats; each network's
training (:class:`NetworkTrainer`) returns its weights without publishing them. When every network has finished,
the run writes all their checkpoints to temporary files and only then renames them over the served ones
(:func:`lib.checkpoint.publish`): a run that is stopped, crashes or whose server dies publishes nothing, and the
served pair stays as it was.

With ``multi_gpu`` (the default) on a machine with more than one visible GPU, the run trains in one process per
GPU (:mod:`lib.trainers.distributed`, NCCL); under ``torchrun`` (the offline command) it trains in the processes
``torchrun`` started. Either way every process validates its share of the validation cases, and process 0
writes the stats and publishes, once, after every process has finished.

Weights that descend from a starting checkpoint replace the served ones only from ``finetune_min_labels``
labelled cases (:func:`held_back`): earlier runs train and keep their final weights, which the next run continues
from, while the served weights stay. With ``replay_studies``, cases labelled elsewhere train beside the run's own
(:mod:`lib.trainers.replay`); they do not count as labels here.

Bounds: ``max_epochs`` epochs of the segmentation network and ``min(click_epochs, max_epochs)`` of the click
network; ``train_minutes`` for the whole run, of which the segmentation network may use ``SEGMENTATION_SHARE``
when the click network trains after it (the click network gets what is left).
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from lib.checkpoint import Weights, publish
from lib.config import AppConfig
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION, NetworkDescription
from lib.server.lifeline import server_alive
from lib.trainers.cases import Case, split_cases, usable_cases
from lib.trainers.deadline import StopBeforeDeadline
from lib.trainers.distributed import World, all_finished, current_world, spawn, visible_gpus
from lib.trainers.epoch_monitor import KEPT_SERVING, STARTING_MODEL, EpochMonitor, PhaseResult
from lib.trainers.network_trainer import NetworkTrainer, Phase
from lib.trainers.replay import replay_cases
from lib.trainers.run_options import RunOptions
from lib.trainers.run_stats import DONE, RUNNING, RunStats, read_stats, stats_path

logger = logging.getLogger(__name__)

# Share of a run's time budget the segmentation network may use when the click network trains after it.
SEGMENTATION_SHARE = 2 / 3


class NoWeightsError(RuntimeError):
    """A network produced no weights, so the run publishes nothing."""


def held_back(result: PhaseResult, labels: int, app_config: AppConfig) -> str | None:
    """Why ``result``'s weights must not replace the served ones yet, or None when they may.

    Weights fine-tuned from a starting checkpoint replace what is served only once the run has trained on
    ``finetune_min_labels`` labelled cases. Rounds on fewer cannot be validated (no or one validation case) and,
    in the campaign benchmark, fell below their starting model in 14 of 27 rounds on 1-3 new labels, against 2 of
    25 rounds on 4 or more (benchmarks/README.md). Weights trained from scratch always replace what is served.
    """
    starting = result.best.meta.get(STARTING_MODEL)
    if starting is None or labels >= app_config.finetune_min_labels:
        return None
    return (
        f"trained on {labels} labelled case(s), fewer than finetune_min_labels ({app_config.finetune_min_labels}): "
        f"the weights fine-tuned from {starting} are kept for the next run, and the served weights stay"
    )


def kept_for_next_run(result: PhaseResult) -> Weights:
    """The final weights of a held-back network, tagged with the served weights' run id so the next run continues
    from them as long as those stay served."""
    final = result.final
    return Weights(final.state, {**final.meta, KEPT_SERVING: result.served_run_id}, final.path)


class TrainingRun(TrainTask):
    """Train both networks on every usable labelled case, and publish both when the run completes.

    Args:
        app_config: the app configuration.
    """

    def __init__(self, app_config: AppConfig) -> None:
        super().__init__(
            "Fine-tune the tumour models on submitted labels "
            f"({', '.join(app_config.plan.labels)}): auto segmentation, then learned clicks"
        )
        self.app_config = app_config
        self.stats_path = stats_path(app_config.model_dir)

    def networks(self) -> list[NetworkDescription]:
        """The networks a run trains, in order."""
        return [SEGMENTATION, CLICK_NETWORK] if self.app_config.click_epochs > 0 else [SEGMENTATION]

    def config(self) -> dict[str, Any]:
        """The Train options 3D Slicer shows (lists offer choices; the first is the value)."""
        mlflow = self.app_config.tracking == "mlflow"
        return {
            "max_epochs": self.app_config.epochs,
            "train_minutes": self.app_config.train_minutes,
            "val_split": self.app_config.val_split,
            "learning_rate": self.app_config.learning_rate,
            "finetune_learning_rate": self.app_config.finetune_learning_rate,
            "device": [str(self.app_config.torch_device())],
            "multi_gpu": visible_gpus() > 1,
            "tracking": ["mlflow", "None"] if mlflow else ["None", "mlflow"],
        }

    def stats(self) -> dict[str, Any]:
        """The current or last run's stats (:mod:`lib.trainers.run_stats`)."""
        return read_stats(self.stats_path)

    def epochs(self, options: RunOptions) -> dict[str, int]:
        """The most epochs of each network in a run with ``options``."""
        cap = {SEGMENTATION: options.max_epochs, CLICK_NETWORK: min(self.app_config.click_epochs, options.max_epochs)}
        return {network.name: cap[network] for network in self.networks()}

    def processes(self, options: RunOptions) -> int:
        """How many processes a run started by the server trains in: one per visible GPU with ``multi_gpu``."""
        gpus = visible_gpus() if self.app_config.torch_device().type == "cuda" else 0
        return gpus if options.multi_gpu and gpus > 1 else 1

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        start = time.time()
        options = RunOptions.from_request(request, self.app_config)
        cases = usable_cases(datastore, self.app_config)
        train, val = split_cases(cases, options.val_split, self.app_config.sequences)
        replay = replay_cases(self.app_config, train)  # labelled elsewhere: they train beside train, never validate
        run_id = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
        processes = self.processes(options)
        if processes > 1 and not current_world().distributed:
            spawn(self.run, processes, "cuda", start, options, train, val, run_id, replay)
            return self.stats()  # as process 0 wrote them
        return self.run(current_world(), start, options, train, val, run_id, replay)

    def run(
        self,
        world: World,
        start: float,
        options: RunOptions,
        train: list[Case],
        val: list[Case],
        run_id: str,
        replay: list[Case] | None = None,
    ) -> dict[str, Any]:
        """Train every network in this process (of ``world``), then publish them from process 0; ``replay``: the
        replay cases to train on beside ``train`` (:func:`lib.trainers.replay.replay_cases`, drawn once per run)."""
        networks = self.networks()
        replay = replay or []
        stats = RunStats(self.stats_path, run_id, self.epochs(options), replay_cases=len(replay))
        if world.main:
            stats.write(RUNNING)
        deadline = start + 60 * options.train_minutes
        results: list[PhaseResult] = []
        for network in networks:
            share = SEGMENTATION_SHARE if network == SEGMENTATION and len(networks) > 1 else 1.0
            phase_deadline = time.time() + share * (deadline - time.time())

            def progress(monitor: EpochMonitor, stop: StopBeforeDeadline, name: str = network.name) -> None:
                stats.update(name, monitor.summary(), stop.stopped)
                stats.write(RUNNING)

            phase = Phase(run_id, stats.planned[network.name], phase_deadline, [*train, *replay], val, progress)
            result = NetworkTrainer(self.app_config, network, world).train_phase(phase, options)
            if result is not None:
                results.append(result)
            elif world.main:
                raise NoWeightsError(f"run {run_id}: the {network.name} network produced no weights; nothing published")
        all_finished()  # raises, publishing nothing, when a process of the run has died
        if not world.main:
            return {"run_id": run_id, "rank": world.rank, "status": DONE}
        if not server_alive():
            logger.error("Run %s: the server that started it has ended; nothing is published", run_id)
            return stats.document(RUNNING)
        labels = len(train) + len(val)
        held = {r.network: held_back(r, labels, self.app_config) for r in results}
        served = [r for r in results if held[r.network] is None]
        finals = [kept_for_next_run(r) if held[r.network] else r.final for r in results]
        publish(
            [r.best for r in served] + finals,
            self.app_config.plan,
            [r.network for r in served] + [r.network for r in results],
        )
        for network, reason in held.items():
            stats.published(network.name, reason)
            if reason:
                logger.info("Run %s: %s not published: %s", run_id, network.name, reason)
        stats.write(DONE)
        logger.info("Run %s published %s", run_id, ", ".join(r.network.name for r in served) or "no served weights")
        return stats.document(DONE)
