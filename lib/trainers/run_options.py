"""The options of one Train request, checked once into a typed object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.config import AppConfig


@dataclass(frozen=True)
class RunOptions:
    """What an annotator may set for one training run (3D Slicer's training options table).

    Attributes:
        max_epochs: epochs of each network: the segmentation network trains ``max_epochs``, the click network
            ``min(click_epochs, max_epochs)``.
        train_minutes: wall-clock budget of the whole run, both networks together.
        val_split: fraction of the labelled cases held out for validation.
        learning_rate: AdamW learning rate of a network trained from scratch on this server's labels.
        finetune_learning_rate: AdamW learning rate of a network whose weights descend from a starting checkpoint.
        tracking: ``"mlflow"`` to record the run in MLflow, else ``"None"``.
        multi_gpu: train in one process per visible GPU when there is more than one (MONAI Label's option).
    """

    max_epochs: int
    train_minutes: float
    val_split: float
    learning_rate: float
    finetune_learning_rate: float
    tracking: str = "None"
    multi_gpu: bool = True

    @classmethod
    def from_request(cls, request: dict[str, Any], app_config: AppConfig) -> RunOptions:
        """The request's options over the configured defaults; a list sends its first item (as 3D Slicer does).

        Raises:
            ValueError: naming the option that is not a number or out of range.
        """
        defaults = {
            "max_epochs": app_config.epochs,
            "train_minutes": app_config.train_minutes,
            "val_split": app_config.val_split,
            "learning_rate": app_config.learning_rate,
            "finetune_learning_rate": app_config.finetune_learning_rate,
            "tracking": "mlflow" if app_config.tracking == "mlflow" else "None",
        }
        values: dict[str, Any] = {}
        for key, default in defaults.items():
            value = request.get(key, default)
            value = value[0] if isinstance(value, list) and value else value
            try:
                values[key] = type(default)(value)
            except (TypeError, ValueError):
                raise ValueError(f"training option {key}={value!r} is not a valid {type(default).__name__}") from None
        options = cls(**values, multi_gpu=flag_option("multi_gpu", request.get("multi_gpu", True)))
        if (
            options.max_epochs < 1
            or not 0 <= options.val_split < 1
            or options.learning_rate <= 0
            or options.finetune_learning_rate <= 0
            or options.train_minutes <= 0
        ):
            raise ValueError(
                "training options need max_epochs >= 1, 0 <= val_split < 1, learning_rate > 0, "
                "finetune_learning_rate > 0 and train_minutes > 0"
            )
        return options


def flag_option(key: str, value: Any) -> bool:
    """A yes/no option as 3D Slicer or a script sends it: a bool, a string or a list whose first item is one."""
    value = value[0] if isinstance(value, list) and value else value
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"training option {key}={str(value)[:40]!r} is not true or false")
