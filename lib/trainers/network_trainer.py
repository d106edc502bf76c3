"""Train one of the app's networks for one phase of a training run (MONAI Label's ``BasicTrainTask`` engine).

The run (:mod:`lib.trainers.run`) gives each network its cases, epochs and deadline, and publishes what the
phases return; this module only trains.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import CacheDataset
from monai.handlers import MeanDice, from_engine
from monai.losses import DiceCELoss
from monai.transforms import Activationsd, AsDiscreted, Compose, Lambdad
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from lib.checkpoint import CheckpointError, load_state, read_checkpoint, serving_checkpoint
from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import NetworkDescription
from lib.networks.ensemble import MemberLoss, mean_log_softmax
from lib.networks.precision import MixedPrecisionInferer, autocast_dtype
from lib.trainers.cases import Case, case_id
from lib.trainers.deadline import StopBeforeDeadline
from lib.trainers.distributed import SINGLE, World, data_parallel, shard, unwrap
from lib.trainers.epoch_monitor import (
    KEPT_SERVING,
    STARTING_MODEL,
    VAL_DICE,
    VAL_DICE_LARGEST_PER_LABEL,
    VAL_DICE_PER_LABEL,
    EpochMonitor,
    PhaseResult,
)
from lib.trainers.optimizer import FiniteAdamW
from lib.trainers.recipes import RECIPES
from lib.trainers.run_options import RunOptions
from lib.trainers.schedule import PolyLearningRate
from lib.transforms.components import keep_largest_onehot
from lib.transforms.pipeline import LABEL, PRED, sliding_window

logger = logging.getLogger(__name__)


def largest_components(classes: int) -> Callable[[Any], tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Validation output transform: one-hot predictions with every label reduced to its largest component."""
    pairs = from_engine([PRED, LABEL])

    def transform(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        predictions, labels = pairs(output)
        return [keep_largest_onehot(p, range(1, classes)) for p in predictions], labels

    return transform


@dataclass(frozen=True)
class Phase:
    """One network's share of a run.

    Attributes:
        run_id: the run's identifier.
        epochs: most epochs to train.
        deadline: ``time.time()`` by which this network's training must end.
        train: the training cases; val: the validation cases.
        on_epoch: called after every epoch with the phase's monitor and deadline handler.
    """

    run_id: str
    epochs: int
    deadline: float
    train: list[Case]
    val: list[Case]
    on_epoch: Callable[[EpochMonitor, StopBeforeDeadline], None]


class NetworkTrainer(BasicTrainTask):
    """Patch-based training of one network from annotators' labels.

    Continues from the final weights of the run that published the served ones (or of the last run that left them
    served, :func:`lib.trainers.run.held_back`), else the served weights (the
    latest published, else the starting checkpoint for the segmentation network), else from scratch; the served
    weights are validated as "epoch 0" when they never trained on a validation case. Weights that descend from a
    starting checkpoint (their meta names it as ``starting_model``) are fine-tuned at ``finetune_learning_rate``,
    the others trained at ``learning_rate``. Keeps at most ``cache_cases`` preprocessed cases in memory; uses AMP
    on CUDA.

    In a distributed run (:mod:`lib.trainers.distributed`) every process trains on its own shard of the training
    cases with the network wrapped in ``DistributedDataParallel``, and validates its own share of the validation
    cases (MONAI's metrics gather them, so every case is validated once and every process sees the same Dice and
    keeps the same best weights); process 0 alone reports progress and returns the weights to publish, and the
    time budget ends every process after the same epoch.

    Args:
        app_config: the app configuration.
        network: which network to train.
        world: this process's place in a distributed run.
    """

    def __init__(self, app_config: AppConfig, network: NetworkDescription, world: World = SINGLE) -> None:
        mlflow = app_config.tracking == "mlflow"
        self.tracking_uri = app_config.tracking_uri or f"sqlite:///{os.path.abspath(app_config.model_dir)}/mlflow.db"
        super().__init__(
            model_dir=app_config.model_dir,
            description=f"Train the {network.name} network",
            # MONAI's amp adds the float16 loss scaling; bfloat16 needs none (lib.networks.precision).
            amp=autocast_dtype(app_config.amp, app_config.torch_device()) == torch.float16,
            labels=list(app_config.plan.labels),
            disable_meta_tracking=True,
            tracking="mlflow" if mlflow else None,
            tracking_uri=self.tracking_uri,
        )
        self.app_config = app_config
        self.trained = network
        self.world = world
        self.recipe = RECIPES[network]
        self.phase: Phase | None = None
        self.monitor: EpochMonitor | None = None
        self.deadline: StopBeforeDeadline | None = None
        self._served: tuple[dict[str, torch.Tensor], list[str] | None] | None = None
        self._served_run_id: str | None = None
        self._start_trained_on: set[str] | None = None  # cases the weights this run starts from trained on
        self._starting_model: str | None = None  # the starting checkpoint those weights descend from, if any

    def train_phase(self, phase: Phase, options: RunOptions) -> PhaseResult | None:
        """Train for ``phase``; the weights to publish, or None when none were produced (and in every process
        but the first of a distributed run)."""
        self.phase = phase
        request = {
            **self._config,
            "run_id": phase.run_id,
            "name": f"{self.trained.name}_runs",  # MONAI's own checkpoints of each network in their own folder
            "model": self.trained.name,
            "max_epochs": phase.epochs,
            "learning_rate": options.learning_rate,
            "finetune_learning_rate": options.finetune_learning_rate,
            "val_split": options.val_split,
            "device": self.world.device(self.app_config.torch_device()),
            "multi_gpu": False,  # MONAI Label's own process group is not used: this one is (lib.trainers.distributed)
            "dataset": "CacheDataset",
            "dataloader": "ThreadDataLoader",
            "tracking": "mlflow" if options.tracking == "mlflow" else None,
            "tracking_uri": self.tracking_uri,
        }
        try:
            self.train(self.world.rank, self.world.size, request, [*phase.train, *phase.val])
        finally:
            self.cleanup(request)
        result = self.monitor.result() if self.monitor and self.world.main else None
        return dataclasses.replace(result, served_run_id=self._served_run_id) if result else None

    def partition_datalist(self, context: Context, shuffle: bool = False) -> tuple[list, list]:
        assert self.phase is not None
        return list(self.phase.train), list(self.phase.val)

    def _dataset(self, context: Context, datalist: list, is_train: bool, replace_rate: float = 0.25):
        datalist = shard(datalist, self.world, equal=is_train)
        transforms = self.train_pre_transforms(context) if is_train else self.val_pre_transforms(context)
        cache = min(self.app_config.cache_cases, len(datalist))
        return CacheDataset(datalist, Compose(transforms), cache_num=cache, progress=False), datalist

    def network(self, context: Context) -> torch.nn.Module:
        return build_network(self.app_config.plan, self.trained)

    def _create_network_and_optimizer(self, context: Context) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The network with the weights the run starts from, then its optimizer (whose rate depends on them)."""
        context.network = self.network(context).to(context.device)
        self._load_start(context)
        optimizer = self.optimizer(context)
        return data_parallel(context.network, self.world), optimizer

    def _create_evaluator(self, context: Context):
        """The evaluator runs the network outside its DDP wrapper: validation exchanges only the metrics."""
        wrapped, context.network = context.network, unwrap(context.network)
        try:
            return super()._create_evaluator(context)
        finally:
            context.network = wrapped

    def optimizer(self, context: Context) -> torch.optim.Optimizer:
        return FiniteAdamW(context.network.parameters(), lr=self.learning_rate(context))

    def learning_rate(self, context: Context) -> float:
        """``finetune_learning_rate`` for weights that descend from a starting checkpoint, else ``learning_rate``."""
        return float(context.request["finetune_learning_rate" if self._starting_model else "learning_rate"])

    def loss_function(self, context: Context) -> torch.nn.Module:
        """DiceCE; for an ensemble, each member's own (:class:`lib.networks.ensemble.MemberLoss`)."""
        loss = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)
        return MemberLoss(loss, self.trained.members(self.app_config.plan))

    def lr_scheduler_handler(self, context: Context) -> PolyLearningRate:
        return PolyLearningRate(context.optimizer, self.phase.deadline if self.phase else None)

    def train_inferer(self, context: Context) -> MixedPrecisionInferer:
        return MixedPrecisionInferer(self.app_config.amp)

    def train_pre_transforms(self, context: Context) -> list:
        return self.recipe.training(self.app_config)

    def val_pre_transforms(self, context: Context) -> list:
        return self.recipe.validation(self.app_config)

    def train_iteration_update(self, context: Context):
        return self.recipe.iteration_update(self.app_config, train=True)

    def val_iteration_update(self, context: Context):
        return self.recipe.iteration_update(self.app_config, train=False)

    def train_post_transforms(self, context: Context) -> list:
        """The training Dice's transforms; an ensemble's members' outputs are first averaged (mean softmax): in
        training mode an :class:`~lib.networks.ensemble.Ensemble` returns them side by side."""
        members = self.trained.members(self.app_config.plan)
        average = [Lambdad(PRED, lambda p: mean_log_softmax(p, members, dim=0))] if members > 1 else []
        return [*average, *self.val_post_transforms(context)]

    def val_post_transforms(self, context: Context) -> list:
        """The validation Dice's transforms. Validation runs the network in eval mode, where an ensemble already
        returns its members' average (MONAI Label reuses the training transforms here, which averaged it again:
        an ensemble then validated at Dice 0 and every fine-tuning round kept the served weights)."""
        n = self.trained.out_channels(self.app_config.plan)
        return [Activationsd(PRED, softmax=True), AsDiscreted([PRED, LABEL], argmax=(True, False), to_onehot=(n, n))]

    def val_inferer(self, context: Context):
        return sliding_window(self.app_config, batch_size=2)

    def val_key_metric(self, context: Context) -> dict[str, MeanDice]:
        return {VAL_DICE: MeanDice(output_transform=from_engine([PRED, LABEL]), include_background=False)}

    def val_additional_metrics(self, context: Context) -> dict[str, MeanDice]:
        metrics = {
            VAL_DICE_PER_LABEL: MeanDice(
                output_transform=from_engine([PRED, LABEL]), include_background=False, reduction="mean_batch"
            )
        }
        if self.trained.keeps_largest:  # decides the post-processing of the served weights (EpochMonitor)
            metrics[VAL_DICE_LARGEST_PER_LABEL] = MeanDice(
                output_transform=largest_components(self.trained.out_channels(self.app_config.plan)),
                include_background=False,
                reduction="mean_batch",
            )
        return metrics

    def load_path(self, output_dir: str, pretrained: bool = True) -> str | None:
        return serving_checkpoint(self.app_config, self.trained) if pretrained else None

    def _load_checkpoint(self, context: Context, train_handlers: list) -> None:
        """Nothing: the weights are loaded before the optimizer is made (:meth:`_load_start`)."""

    def _load_start(self, context: Context) -> None:
        """Load the weights this run continues from, keep the served ones for "epoch 0", and note the starting
        checkpoint they descend from."""
        self._served, self._served_run_id, self._start_trained_on, self._starting_model = None, None, None, None
        path = self.load_path(context.output_dir, bool(context.pretrained))
        if path is None:
            logger.info("No weights for the %s network yet: training from scratch", self.trained.name)
            return
        plan = self.app_config.plan
        try:
            state, meta = read_checkpoint(path, plan, self.trained)
            start, start_meta = self._last_weights(meta) or (state, meta)
            source = self.trained.last_path(self.app_config.model_dir) if start is not state else path
            load_state(unwrap(context.network), start, source)
        except CheckpointError as e:
            logger.warning("Training the %s network from scratch: %s", self.trained.name, e)
            return
        self._served, self._served_run_id = (state, meta.get("trained_on")), meta.get("run_id")
        self._start_trained_on = set(start_meta["trained_on"]) if "trained_on" in start_meta else None
        starting = path == self.app_config.checkpoint and source == path  # the starting checkpoint itself
        self._starting_model = os.path.basename(path) if starting else start_meta.get(STARTING_MODEL)
        logger.info(
            "Fine-tuning the %s network from %s at learning rate %g%s",
            self.trained.name,
            os.path.basename(source),
            self.learning_rate(context),
            f" (descends from the starting model {self._starting_model})" if self._starting_model else "",
        )

    def _last_weights(self, served: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The final weights of the run that published the served ones, or of the last run that kept them served
        (``finetune_min_labels``), when kept and still loadable."""
        path = self.trained.last_path(self.app_config.model_dir)
        if not os.path.isfile(path) or "run_id" not in served:
            return None
        try:
            state, meta = read_checkpoint(path, self.app_config.plan, self.trained)
        except CheckpointError as e:
            logger.warning("Not continuing from the last run's final weights: %s", e)
            return None
        return (state, meta) if served["run_id"] in (meta.get("run_id"), meta.get(KEPT_SERVING)) else None

    def finalize(self, context: Context) -> None:
        """Attach the deadline and the monitor (instead of MONAI Label's publisher: the run publishes)."""
        assert self.phase is not None
        phase = self.phase
        cases = {"train": len(context.train_datalist), "val": len(context.val_datalist)}
        sequences = self.app_config.sequences
        val_ids = {case_id(d, sequences) for d in context.val_datalist}
        # The served weights compete with this run's epochs only when validated on cases they never trained on.
        served = self._served
        fair = served is not None and served[1] is not None and not (val_ids & set(served[1]))
        if served is not None and not fair:
            logger.info("Served weights trained on a validation case (or not recorded): not validated as epoch 0")
        self.deadline = StopBeforeDeadline(phase.deadline)
        self.deadline.attach(context.trainer)
        self.monitor = EpochMonitor(
            self.app_config,
            self.trained,
            unwrap(context.network),
            phase.run_id,
            cases,
            served=served if fair else None,
            # Fine-tuned weights descend from the starting ones: they have seen those cases too.
            trained_on=sorted(
                {case_id(d, sequences) for d in context.train_datalist} | (self._start_trained_on or set())
            ),
            validated_on=sorted(val_ids),
            starting_model=self._starting_model,
            learning_rate=self.learning_rate(context),
            on_epoch=(lambda: phase.on_epoch(self.monitor, self.deadline)) if self.world.main else None,
        )
        self.monitor.attach(context.trainer, context.evaluator)
