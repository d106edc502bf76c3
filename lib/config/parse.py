"""Parse ``monailabel start_server --conf KEY VALUE`` once into an :class:`AppConfig`.

A bad value raises :class:`ConfigError` naming the key and what is accepted; nothing is evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch

from lib.config.app_config import (
    AMP_CHOICES,
    AUGMENTATION_CHOICES,
    AUTH_CHOICES,
    AUTO,
    TRACKING,
    TTA_CHOICES,
    AppConfig,
)
from lib.config.plan import ARCHITECTURES, MODALITIES, ModelPlan

T = TypeVar("T")

# Keys that monailabel itself understands in --conf; accepted and left to monailabel.
MONAILABEL_KEYS = ("server_mode",)
PLAN_KEYS = tuple(f.name for f in dataclasses.fields(ModelPlan))


class ConfigError(ValueError):
    """A ``--conf`` key is unknown or its value is not accepted."""


def _fail(key: str, value: str, accepted: str) -> ConfigError:
    return ConfigError(f"--conf {key} {value!r} is not accepted: expected {accepted}")


def _numbers(key: str, value: str, count: int, cast: Callable[[str], T], accepted: str) -> tuple[T, ...]:
    parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * count
    try:
        numbers = tuple(cast(p) for p in parts)
    except ValueError:
        raise _fail(key, value, accepted) from None
    if len(numbers) != count:
        raise _fail(key, value, accepted)
    return numbers


def _positive_float(text: str) -> float:
    number = float(text)
    if not 0 < number < math.inf:
        raise ValueError(text)
    return number


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text)
        if number < minimum:
            raise ValueError(text)
        return number

    return parse


_positive_int = _at_least(1)


def _between(minimum: int, maximum: int) -> Callable[[str], int]:
    at_least = _at_least(minimum)

    def parse(text: str) -> int:
        number = at_least(text)
        if number > maximum:
            raise ValueError(text)
        return number

    return parse


MAX_FEATURES, MAX_ENSEMBLE = 256, 16  # beyond them a network or an ensemble would not fit a workstation's memory


def _names(value: str) -> tuple[str, ...]:
    """Comma-separated names; an empty one (``tumor,,edema``, ``tumor,``) is a typo, refused by the callers."""
    return tuple(n.strip() for n in value.split(","))


def _labels(value: str) -> tuple[str, ...]:
    names = _names(value)
    # Names are matched case-insensitively (to Slicer segment names), so they must differ in more than case.
    accepted = "comma-separated unique label names, e.g. 'tumor' or 'tumor,edema' (not 'background')"
    reserved = [n for n in names if n.lower() == "background" or n.endswith("_scribbles")]
    if not all(names) or len({n.lower() for n in names}) != len(names) or reserved:
        raise _fail("labels", value, accepted)
    return names


def _sequences(value: str) -> tuple[str, ...]:
    names = _names(value)
    accepted = "comma-separated unique sequence names of letters and digits, e.g. 't2f,t1c,t1n,t2w'"
    # Unique whatever their case: file systems that ignore case would hold one file for both.
    if len({n.lower() for n in names}) != len(names) or not all(n.isalnum() for n in names):
        raise _fail("sequences", value, accepted)
    return names


def _outline_names(value: str) -> tuple[tuple[str, str], ...]:
    pairs = [p.partition("=") for p in value.split(",") if p.strip()]
    if not pairs or any(not name.strip() or not label.strip() or not eq for name, eq, label in pairs):
        raise _fail("outline_names", value, "comma-separated OUTLINE=LABEL pairs, e.g. 'GTV_Mass_CT=tumor'")
    return tuple((name.strip(), label.strip()) for name, _, label in pairs)


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise _fail(key, value, "one of " + ", ".join(choices))
    return value.lower()


def _device(value: str) -> str:
    accepted = "auto, cpu, cuda or cuda:N"
    value = value.lower()
    if value in ("auto", "cpu", "cuda"):
        return value
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    raise _fail("device", value, accepted)


def _scalar(key: str, value: str, cast: Callable[[str], T], accepted: str) -> T:
    try:
        return cast(value)
    except ValueError:
        raise _fail(key, value, accepted) from None


def _fraction(text: str) -> float:
    number = float(text)
    if not 0.0 <= number < 1.0:
        raise ValueError(text)
    return number


def _niceness(text: str) -> int:
    number = int(text)
    if not 0 <= number <= 19:
        raise ValueError(text)
    return number


def _probability(text: str) -> float:
    number = float(text)
    if not 0.0 <= number <= 1.0:
        raise ValueError(text)
    return number


def _dropout(text: str) -> float:
    number = float(text)
    if not 0.0 < number < 1.0:
        raise ValueError(text)
    return number


def _window(value: str) -> tuple[float, float]:
    low, high = _numbers("ct_window", value, 2, float, "two HU values 'low,high' with low < high")
    if not -math.inf < low < high < math.inf:
        raise _fail("ct_window", value, "two HU values 'low,high' with low < high")
    return low, high


def _tracking_uri(value: str) -> str:
    # MLflow 3 refuses its file store, so a path or file: URI would turn every training run into an ERROR.
    if value and not value.startswith(("sqlite:", "http://", "https://", "postgresql", "mysql", "databricks")):
        raise _fail("tracking_uri", value, "a database or server URI such as sqlite:////path/mlflow.db or http://host")
    return value


PARSERS: dict[str, Callable[[str], object]] = {
    "labels": _labels,
    "modality": lambda v: _choice("modality", v, MODALITIES),
    "ct_window": _window,
    "spacing": lambda v: _numbers("spacing", v, 3, _positive_float, "three positive mm values 'i,j,k' or one"),
    "patch_size": lambda v: _numbers("patch_size", v, 3, _positive_int, "three positive voxel counts 'i,j,k'"),
    "window_voxels": lambda v: _scalar("window_voxels", v, _positive_int, "a positive number of voxels"),
    "channels": lambda v: _scalar("channels", v, _positive_int, "a positive integer"),
    "sequences": _sequences,
    "outline_names": lambda v: _outline_names(v),
    "network": lambda v: _choice("network", v, tuple(ARCHITECTURES)),
    "features": lambda v: _scalar("features", v, _between(1, MAX_FEATURES), f"an integer 1..{MAX_FEATURES}"),
    "ensemble": lambda v: _scalar(
        "ensemble", v, _between(1, MAX_ENSEMBLE), f"a number of networks 1..{MAX_ENSEMBLE} (1: no ensemble)"
    ),
    "dropout": lambda v: _scalar("dropout", v, _dropout, "a probability strictly between 0 and 1"),
    "device": _device,
    "amp": lambda v: _choice("amp", v, AMP_CHOICES),
    "checkpoint": lambda v: "" if v.lower() in ("", "none") else AUTO if v.lower() == AUTO else v,
    "model_dir": str,
    "epochs": lambda v: _scalar("epochs", v, _positive_int, "a positive integer"),
    "click_epochs": lambda v: _scalar("click_epochs", v, _at_least(0), "a non-negative integer"),
    "click_rounds": lambda v: _scalar("click_rounds", v, _at_least(0), "a non-negative integer"),
    "train_minutes": lambda v: _scalar("train_minutes", v, _positive_float, "a positive number of minutes"),
    "learning_rate": lambda v: _scalar("learning_rate", v, _positive_float, "a positive number"),
    "finetune_learning_rate": lambda v: _scalar("finetune_learning_rate", v, _positive_float, "a positive number"),
    "finetune_min_labels": lambda v: _scalar("finetune_min_labels", v, _positive_int, "a positive integer"),
    "replay_studies": lambda v: "" if v.lower() in ("", "none") else v,
    "val_split": lambda v: _scalar("val_split", v, _fraction, "a fraction in [0, 1)"),
    "min_val_cases": lambda v: _scalar("min_val_cases", v, _positive_int, "a positive integer"),
    "samples_per_case": lambda v: _scalar("samples_per_case", v, _positive_int, "a positive integer"),
    "foreground_share": lambda v: _scalar("foreground_share", v, _probability, "a probability from 0 to 1"),
    "augmentation": lambda v: _choice("augmentation", v, AUGMENTATION_CHOICES),
    "tta": lambda v: _choice("tta", v, TTA_CHOICES),
    "cache_cases": lambda v: _scalar("cache_cases", v, _at_least(0), "a non-negative integer"),
    "mc_samples": lambda v: _scalar("mc_samples", v, _at_least(2), "an integer >= 2"),
    "background_niceness": lambda v: _scalar("background_niceness", v, _niceness, "an integer from 0 to 19"),
    "tracking": lambda v: _choice("tracking", v, TRACKING),
    "tracking_uri": lambda v: _tracking_uri(v),
    "users": str,
    "auth": lambda v: _choice("auth", v, AUTH_CHOICES),
    "token_minutes": lambda v: _scalar("token_minutes", v, _positive_float, "a positive number of minutes"),
    "max_upload_mb": lambda v: _scalar("max_upload_mb", v, _positive_int, "a positive number of MiB"),
    "max_voxels": lambda v: _scalar("max_voxels", v, _positive_int, "a positive number of voxels"),
}


def _served_candidates(config: AppConfig, plan: ModelPlan, app_dir: str) -> list[str]:
    """The checkpoints the segmentation network may be served from, first the one served when it exists: the
    published weights, then the starting checkpoint (``auto``: the shipped one for the modality)."""
    from lib.checkpoint import shipped_path
    from lib.networks.descriptions import SEGMENTATION

    start = shipped_path(plan, app_dir) if config.checkpoint == AUTO else config.checkpoint
    return [SEGMENTATION.published_path(config.model_dir), *([start] if start else [])]


def parse_config(conf: Mapping[str, str], app_dir: str) -> AppConfig:
    """Parse ``--conf`` key/value strings into an :class:`AppConfig`.

    Args:
        conf: the raw ``--conf`` mapping given to the app.
        app_dir: the app folder; ``model_dir`` defaults to ``<app_dir>/model``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: for an unknown key or a value that is not accepted; the message names the key and what
            is accepted.
    """
    values: dict[str, object] = {}
    conf = {"checkpoint": AUTO, **conf}
    for key, raw in conf.items():
        if key in MONAILABEL_KEYS:
            continue
        parser = PARSERS.get(key)
        if parser is None:
            raise ConfigError(f"--conf {key} is not a known key; accepted keys: {', '.join(sorted(PARSERS))}")
        values[key] = parser(str(raw).strip())

    if "sequences" in values:
        count = len(values["sequences"])  # type: ignore[arg-type]
        if values.setdefault("channels", count) != count:
            raise _fail("channels", str(values["channels"]), f"{count}, one per sequence, or leave it out")
    plan = ModelPlan(**{k: values.pop(k) for k in PLAN_KEYS if k in values})  # type: ignore[arg-type]
    config = AppConfig(plan=plan, **values)  # type: ignore[arg-type]
    if not config.model_dir:
        config = dataclasses.replace(config, model_dir=os.path.join(app_dir, "model"))
    factor = plan.size_divisor
    if any(p % factor for p in config.patch_size):
        raise _fail(
            "patch_size",
            ",".join(map(str, config.patch_size)),
            f"sizes divisible by {factor} for network {plan.network}",
        )
    if plan.network == "unet" and max(config.patch_size) < 2 * factor:
        # Four stride-2 levels leave 1x1x1 voxels at the bottom, where instance normalisation is undefined.
        raise _fail(
            "patch_size", ",".join(map(str, config.patch_size)), f"at least one size >= {2 * factor} for network unet"
        )
    if plan.network == "segresnet" and plan.features % 8:
        # SegResNet normalises with 8 groups, so every level's width must divide by 8.
        raise _fail("features", str(plan.features), "a multiple of 8 for network segresnet")
    from lib.checkpoint import recorded_ensemble, shipped_checkpoint  # here: lib.checkpoint imports this package

    if "ensemble" not in conf:  # as many members as the weights that will be served
        plan = dataclasses.replace(plan, ensemble=recorded_ensemble(_served_candidates(config, plan, app_dir)))
        config = dataclasses.replace(config, plan=plan)
    if config.checkpoint == AUTO:
        config = dataclasses.replace(config, checkpoint=shipped_checkpoint(plan, app_dir))
    if config.checkpoint and not os.path.isfile(config.checkpoint):
        raise _fail("checkpoint", config.checkpoint, "the path of an existing checkpoint file")
    served = _served_candidates(config, plan, app_dir)
    if config.checkpoint and conf["checkpoint"].strip().lower() != AUTO and not os.path.isfile(served[0]):
        # Named by the admin, and what will be served (no published weights yet): usable, or refused now.
        from lib.checkpoint import CheckpointError, read_checkpoint

        try:
            read_checkpoint(config.checkpoint, plan)
        except CheckpointError as e:
            raise ConfigError(f"--conf checkpoint {config.checkpoint} cannot be served: {e}") from None
    if config.replay_studies and not os.path.isdir(config.replay_studies):
        raise _fail("replay_studies", config.replay_studies, "an existing studies folder (images and labels/final)")
    unknown = [label for _, label in config.outline_names if label not in plan.labels]
    if unknown:
        raise _fail("outline_names", str(unknown), f"pairs whose LABEL is one of the labels: {', '.join(plan.labels)}")
    if config.users and config.auth == "off":
        raise _fail("auth", "off", "auto when --conf users is given (login cannot be both on and off)")
    if config.users and not os.path.isfile(config.users):
        raise _fail("users", config.users, "an existing users file: create it with 'tumor-users --file PATH add NAME'")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail("device", config.device, "auto or cpu: this machine has no CUDA device")
    return config
