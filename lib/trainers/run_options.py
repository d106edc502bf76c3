"""The options of one Train request, checked once into a typed object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lib.config import AppConfig
from lib.shown import shown

# The numeric Train options a client may send: type, test and the words its error shows. The run and the server's
# Train route both check with this table. Values set by ``--conf`` are the operator's, checked by the config parser;
# a client may not set more than a day of training.
TRAIN_VALUES: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "max_epochs": (int, lambda v: v >= 1, "an integer >= 1"),
    "train_minutes": (float, lambda v: 0 < v <= 24 * 60, "minutes in (0, 1440]"),
    "val_split": (float, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "learning_rate": (float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "finetune_learning_rate": (float, lambda v: 0 < v < 1, "a number in (0, 1)"),
}


def first_item(value: Any) -> Any:
    """A client's value as the run reads it: a list (3D Slicer sends an option's choices) gives its first item."""
    return value[0] if isinstance(value, list) and value else value


def train_value(key: str, value: Any) -> Any:
    """A client's value of the numeric Train option ``key`` (:data:`TRAIN_VALUES`); a list sends its first item,
    as 3D Slicer does.

    Raises:
        ValueError: naming the option, the value and what it accepts.
    """
    value = first_item(value)
    cast, valid, accepted = TRAIN_VALUES[key]
    try:
        number = None if isinstance(value, bool) else cast(value)
        if cast is int and isinstance(value, float) and not value.is_integer():
            number = None  # 1.9 epochs is a mistake, not 1
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not valid(number):
        raise ValueError(f"training option {key}={shown(value)} is not accepted: {accepted}")
    return number


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
        """The request's options over the configured defaults (each checked with :func:`train_value`).

        Raises:
            ValueError: naming the option that is not a number or out of range.
        """
        values: dict[str, Any] = {
            "max_epochs": app_config.epochs,
            "train_minutes": app_config.train_minutes,
            "val_split": app_config.val_split,
            "learning_rate": app_config.learning_rate,
            "finetune_learning_rate": app_config.finetune_learning_rate,
        }
        values.update({key: train_value(key, request[key]) for key in TRAIN_VALUES if key in request})
        tracking = tracking_option(request.get("tracking", "mlflow" if app_config.tracking == "mlflow" else "None"))
        return cls(**values, tracking=tracking, multi_gpu=flag_option("multi_gpu", request.get("multi_gpu", True)))


def tracking_option(value: Any) -> str:
    """The ``tracking`` option as a client sends it (a list sends its first item): ``"None"`` or ``"mlflow"``.

    Raises:
        ValueError: naming the value.
    """
    value = first_item(value)
    if value not in ("None", "mlflow"):
        raise ValueError(f"training option tracking={shown(value)} is not accepted: 'None' or 'mlflow'")
    return value


def flag_option(key: str, value: Any) -> bool:
    """A yes/no option as 3D Slicer or a script sends it: a bool, a string or a list whose first item is one."""
    value = first_item(value)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"training option {key}={shown(value)} is not true or false")
