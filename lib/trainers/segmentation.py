"""Fine-tune the segmentation network on every image with a ``final`` label."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import psutil
import torch
from monai.data import CacheDataset
from monai.handlers import MeanDice, from_engine
from monai.losses import DiceCELoss
from monai.transforms import Activationsd, AsDiscreted, Compose
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from monailabel.utils.async_tasks.utils import processes

from lib.checkpoint import CheckpointError, load_state, read_checkpoint, serving_checkpoint
from lib.config import CLICKS, SEGMENTATION, SEGMENTATION_SHARE, TumorConfig
from lib.datastore.validation import InvalidUploadError, check_image, check_label
from lib.networks import build_network
from lib.networks.precision import MixedPrecisionInferer, autocast_dtype
from lib.priority import BACKGROUND_TRAINING, lower_priority
from lib.trainers.optimizer import FiniteAdamW
from lib.trainers.run_monitor import VAL_DICE, VAL_DICE_LARGEST_PER_LABEL, VAL_DICE_PER_LABEL, RunMonitor
from lib.trainers.schedule import PolyLearningRate
from lib.transforms.components import keep_largest_onehot
from lib.transforms.pipeline import LABEL, PRED, sliding_window, training_transforms, validation_transforms

logger = logging.getLogger(__name__)

CLICK_STATS_FILE = "clicks_train_stats.json"


def case_id(item: dict[str, str]) -> str:
    """A labelled case's name: its image file name."""
    return os.path.basename(item["image"])


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _coerce(request: dict[str, Any], key: str, cast: type) -> None:
    value = request[key][0] if isinstance(request[key], list) else request[key]
    try:
        request[key] = cast(value)
    except (TypeError, ValueError):
        raise ValueError(f"training option {key}={value!r} is not a valid {cast.__name__}") from None


def largest_components(classes: int) -> Callable[[Any], tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Validation output transform: one-hot predictions with every label reduced to its largest component."""
    pairs = from_engine([PRED, LABEL])

    def transform(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        predictions, labels = pairs(output)
        return [keep_largest_onehot(p, range(1, classes)) for p in predictions], labels

    return transform


def _running(pid: int) -> bool:
    """Whether ``pid`` is a training process this server started and has not stopped.

    ``DELETE /train/`` removes the run from the server's registry at once, while the killed process may take a
    moment to exit; after a server restart the registry is empty, so a run the old server left behind is stopped.
    """
    if not any(process.pid == pid for process in processes("train").values()):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _live(stats: dict[str, Any]) -> dict[str, Any]:
    """``stats`` with a RUNNING run whose process is gone (stopped, crashed, left by an old server) as STOPPED."""
    if stats.get("status") == "RUNNING" and not _running(int(stats.get("pid", -1))):
        stats["status"] = "STOPPED"
    return stats


class SegmentationTrainer(BasicTrainTask):
    """Patch-based training of the served network from annotators' corrections.

    Continues from the final weights of the previous run, else the latest published weights, else the starting
    checkpoint, else from scratch; the served weights are validated as "epoch 0" and kept if no epoch beats them.
    Holds out ``val_split`` of the cases for validation (per-label Dice); keeps at most ``cache_cases``
    preprocessed cases in memory; uses AMP on CUDA. Weights are published only when the run completes (see
    :class:`RunMonitor`).

    When ``click_epochs`` > 0, the same run then trains the click-guided network (:class:`ClickTrainer`) on the
    same cases, so every Train or Auto-Update round improves both.

    A run ends after ``max_epochs`` or when its ``train_minutes`` budget would be passed, whichever comes first
    (the segmentation network may use ``SEGMENTATION_SHARE`` of it when the click network trains after it).

    Args:
        config: the app configuration.
        deadline: ``time.time()`` by which the run must end; None to take it from ``train_minutes`` at each call
            (the click trainer is given what is left of the segmentation run's budget).
    """

    model = SEGMENTATION
    stats_file = "train_stats.json"

    def _epochs(self, config: TumorConfig) -> int:
        return config.epochs

    def _describe(self, config: TumorConfig) -> str:
        return f"Fine-tune the tumour model on submitted labels ({', '.join(config.labels)})"

    def __init__(self, config: TumorConfig, deadline: float | None = None) -> None:
        mlflow = config.tracking == "mlflow"
        tracking_uri = config.tracking_uri or f"sqlite:///{os.path.abspath(config.model_dir)}/mlflow.db"
        super().__init__(
            model_dir=config.model_dir,
            description=self._describe(config),
            config={
                "max_epochs": self._epochs(config),
                "train_minutes": config.train_minutes,
                "val_split": config.val_split,
                "learning_rate": config.learning_rate,
                "device": [str(config.torch_device())],
                "multi_gpu": False,
                "dataset": ["CacheDataset"],
                "dataloader": ["ThreadDataLoader"],
                "tracking": ["mlflow", "None"] if mlflow else ["None", "mlflow"],
                "tracking_uri": tracking_uri,
            },
            # MONAI's amp adds the float16 loss scaling; bfloat16 needs none (lib.networks.precision).
            amp=autocast_dtype(config.amp, config.torch_device()) == torch.float16,
            publish_path=config.published_path(self.model),
            stats_path=os.path.join(config.model_dir, self.stats_file),
            labels=list(config.labels),
            disable_meta_tracking=True,
            tracking="mlflow" if mlflow else None,
            tracking_uri=tracking_uri,
        )
        self.tumor = config
        self.deadline = deadline
        self._run_deadline: float | None = deadline
        self._served: tuple[dict[str, torch.Tensor], list[str] | None] | None = None  # served weights, trained on
        self._start_trained_on: set[str] | None = None  # cases the weights this run starts from trained on
        # tracking_uri is the server's (--conf tracking_uri), not an option for clients: unlisted, a path stays private.
        for key in ("early_stop_patience", "gpus", "tracking_uri"):
            self._config.pop(key, None)
        self._config["name"] = f"{self.model}_runs"  # each network's runs in their own folder under model_dir

    def stats(self) -> dict[str, Any]:
        """Live stats of the current or last run; a run that died or was stopped is reported as STOPPED.

        The segmentation trainer's stats also carry the click network's (under ``clicks``), which trains in the
        same run once the segmentation network is done (3D Slicer shows the first trainer's stats only).
        """
        stats = _live(super().stats())
        clicks = os.path.join(self.tumor.model_dir, CLICK_STATS_FILE)
        if self.model == SEGMENTATION and os.path.isfile(clicks):
            with open(clicks) as f:  # written atomically by the run (RunMonitor)
                stats[CLICKS] = _live(json.load(f))
        return stats

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        start = time.time()
        if self.model == SEGMENTATION and BACKGROUND_TRAINING in request and self.tumor.background_niceness:
            lower_priority(self.tumor.background_niceness)  # this process runs nothing but the training run
            logger.info("Training at a lower CPU priority (niceness +%d)", self.tumor.background_niceness)
        request = {**self._config, **request}
        casts = (("max_epochs", int), ("val_split", float), ("learning_rate", float), ("train_minutes", float))
        for key, cast in casts:
            _coerce(request, key, cast)
        if (
            request["max_epochs"] < 1
            or not 0 <= request["val_split"] < 1
            or request["learning_rate"] <= 0
            or request["train_minutes"] <= 0
        ):
            raise ValueError(
                "training options need max_epochs >= 1, 0 <= val_split < 1, learning_rate > 0 and train_minutes > 0"
            )
        request["multi_gpu"] = False
        deadline = self.deadline or start + 60 * request["train_minutes"]
        with_clicks = self.model == SEGMENTATION and self.tumor.click_epochs > 0
        self._run_deadline = start + SEGMENTATION_SHARE * (deadline - start) if with_clicks else deadline
        result = super().__call__(request, datastore)
        if with_clicks:
            from lib.trainers.clicks import ClickTrainer  # here: lib.trainers.clicks imports this module

            # The annotator's options carry over; epochs, run folder and names are the click network's own.
            clicks = {k: v for k, v in request.items() if k not in ("max_epochs", "run_id", "name", "model")}
            trainer = ClickTrainer(self.tumor, deadline=deadline)
            result = {**result, CLICKS: trainer({**clicks, "model": CLICKS}, datastore)}
        return result

    def pre_process(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, str]]:
        """Every labelled case that can be used; the others are skipped with the reason logged."""
        usable, skipped = [], []
        for item in sorted(datastore.datalist(), key=lambda d: d["image"]):
            try:
                check_image(item["image"], self.tumor.channels, self.tumor.max_voxels, self.tumor.sequences)
                check_label(item["label"], item["image"], len(self.tumor.labels), self.tumor.max_voxels)
            except InvalidUploadError as e:
                logger.warning("Skipping %s from training: %s", os.path.basename(item["image"]), e)
                skipped.append(f"{os.path.basename(item['image'])}: {e}")
                continue
            usable.append({"image": item["image"], "label": item["label"]})
        if not usable:
            reasons = f" ({'; '.join(skipped[:3])})" if skipped else ""
            raise ValueError(f"no usable labelled images: submit at least one label before training{reasons}")
        logger.info("Training on %d labelled case(s)", len(usable))
        return usable

    def partition_datalist(self, context: Context, shuffle: bool = False) -> tuple[list, list]:
        """``val_split`` of the cases (at least one, never all) validate: those whose names hash lowest.

        The hash makes the split stable as annotators add labels: a new case joins validation only by displacing
        a validation case into training, and a training case moves to validation only when the validation share
        grows by one case. So successive runs validate mostly on cases the served weights never trained on.
        """
        datalist = context.datalist
        n_val = round(len(datalist) * float(context.request["val_split"]))
        n_val = min(max(n_val, 1 if context.request["val_split"] > 0 else 0), len(datalist) - 1)
        val_ids = {case_id(d) for d in sorted(datalist, key=lambda d: _hash(case_id(d)))[:n_val]}
        train = [d for d in datalist if case_id(d) not in val_ids]
        val = [d for d in datalist if case_id(d) in val_ids]
        logger.info("Cases: %d for training, %d for validation (%s)", len(train), len(val), ", ".join(sorted(val_ids)))
        return train, val

    def _dataset(self, context: Context, datalist: list, is_train: bool, replace_rate: float = 0.25):
        transforms = self.train_pre_transforms(context) if is_train else self.val_pre_transforms(context)
        cache = min(self.tumor.cache_cases, len(datalist))
        return CacheDataset(datalist, Compose(transforms), cache_num=cache, progress=False), datalist

    def network(self, context: Context) -> torch.nn.Module:
        return build_network(self.tumor, model=self.model)

    def optimizer(self, context: Context) -> torch.optim.Optimizer:
        return FiniteAdamW(context.network.parameters(), lr=float(context.request["learning_rate"]))

    def loss_function(self, context: Context) -> torch.nn.Module:
        return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True)

    def lr_scheduler_handler(self, context: Context) -> PolyLearningRate:
        return PolyLearningRate(context.optimizer, self._run_deadline)

    def train_inferer(self, context: Context) -> MixedPrecisionInferer:
        return MixedPrecisionInferer(self.tumor.amp)

    def train_pre_transforms(self, context: Context) -> list:
        return training_transforms(self.tumor)

    def val_pre_transforms(self, context: Context) -> list:
        return validation_transforms(self.tumor)

    def train_post_transforms(self, context: Context) -> list:
        n = self.tumor.out_channels(self.model)
        return [
            Activationsd(PRED, softmax=True),
            AsDiscreted([PRED, LABEL], argmax=(True, False), to_onehot=(n, n)),
        ]

    def val_inferer(self, context: Context):
        return sliding_window(self.tumor, batch_size=2)

    def val_key_metric(self, context: Context) -> dict[str, MeanDice]:
        return {VAL_DICE: MeanDice(output_transform=from_engine([PRED, LABEL]), include_background=False)}

    def val_additional_metrics(self, context: Context) -> dict[str, MeanDice]:
        metrics = {
            VAL_DICE_PER_LABEL: MeanDice(
                output_transform=from_engine([PRED, LABEL]), include_background=False, reduction="mean_batch"
            )
        }
        if self.model == SEGMENTATION:  # decides the post-processing of the served model (see RunMonitor)
            metrics[VAL_DICE_LARGEST_PER_LABEL] = MeanDice(
                output_transform=largest_components(self.tumor.num_classes),
                include_background=False,
                reduction="mean_batch",
            )
        return metrics

    def load_path(self, output_dir: str, pretrained: bool = True) -> str | None:
        return serving_checkpoint(self.tumor) if pretrained else None

    def _load_checkpoint(self, context: Context, train_handlers: list) -> None:
        """Load the weights this run continues from, and keep the served ones for "epoch 0".

        The run continues from the final weights of the run that published the served weights (``last_path``),
        else from the served weights themselves (the latest published, else the starting checkpoint).
        """
        self._served, self._start_trained_on = None, None
        path = self.load_path(context.output_dir, bool(context.pretrained))
        if path is None:
            logger.info("No published weights or starting checkpoint: training from scratch")
            return
        try:
            state, meta = read_checkpoint(path, self.tumor, self.model)
            start, start_meta = self._last_weights(meta) or (state, meta)
            source = self.tumor.last_path(self.model) if start is not state else path
            load_state(context.network, start, source)
        except CheckpointError as e:
            logger.warning("Training from scratch: %s", e)
            return
        self._served = (state, meta.get("trained_on"))
        self._start_trained_on = set(start_meta["trained_on"]) if "trained_on" in start_meta else None
        logger.info("Fine-tuning from %s", source)

    def _last_weights(self, served: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The final weights of the run that published the served ones, when kept and still loadable."""
        path = self.tumor.last_path(self.model)
        if not os.path.isfile(path) or "run_id" not in served:
            return None
        try:
            state, meta = read_checkpoint(path, self.tumor, self.model)
        except CheckpointError as e:
            logger.warning("Not continuing from the last run's final weights: %s", e)
            return None
        return (state, meta) if meta.get("run_id") == served["run_id"] else None

    def finalize(self, context: Context) -> None:
        cases = {"train": len(context.train_datalist), "val": len(context.val_datalist)}
        val_ids = {case_id(d) for d in context.val_datalist}
        # The served weights compete with this run's epochs only when validated on cases they never trained on.
        served = self._served
        fair = served is not None and served[1] is not None and not (val_ids & set(served[1]))
        if served is not None and not fair:
            logger.info("Served weights trained on a validation case (or not recorded): not validated as epoch 0")
        monitor = RunMonitor(
            self.tumor,
            context.network,
            self._stats_path,
            context.run_id,
            cases,
            self.model,
            self._run_deadline,
            served=served if fair else None,
            # Fine-tuned weights descend from the starting ones: they have seen those cases too.
            trained_on=sorted({case_id(d) for d in context.train_datalist} | (self._start_trained_on or set())),
            validated_on=sorted(val_ids),
        )
        monitor.attach(context.trainer, context.evaluator)

    def train(self, rank: int, world_size: int, request: dict[str, Any], datalist: list) -> dict[str, Any]:
        super().train(rank, world_size, request, datalist)
        with open(self._stats_path) as f:
            return json.load(f)
