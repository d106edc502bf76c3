"""Typed configuration of the tumour app, parsed once from ``monailabel start_server --conf KEY VALUE``.

Every task (inference, training, scoring) reads the same frozen :class:`TumorConfig`, so nothing about the
model (labels, channels, spacing, patch, normalisation, network) is declared twice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
logger = logging.getLogger(__name__)

MODALITIES = ("ct", "mr")
# The two networks the app trains and serves: the auto segmentation, and the click-guided network (DeepEdit-style)
# whose input adds one channel of foreground and one of background clicks to the image.
SEGMENTATION = "segmentation"
CLICKS = "clicks"
MODELS = (SEGMENTATION, CLICKS)
GUIDANCE = ("foreground", "background")
# Share of a training run's time budget the segmentation network may use when the click network trains after it.
SEGMENTATION_SHARE = 2 / 3
NETWORKS = {"segresnet": 8, "unet": 16}  # name -> the factor every patch dimension must divide by
TRACKING = ("none", "mlflow")
AMP_CHOICES = ("auto", "on", "off")  # mixed precision of the forward pass (lib.networks.precision)
AUTH_CHOICES = ("auto", "off")  # login: on when --conf users is given; "off" to serve a network without it
AUTO = "auto"  # --conf checkpoint default: the shipped starting model of the modality, when it fits
SHIPPED_FOLDER = "pretrained"  # in the app folder: <modality>_tumor.pt and its model card
# Keys that monailabel itself understands in --conf; accepted and left to monailabel.
MONAILABEL_KEYS = ("server_mode",)


class ConfigError(ValueError):
    """A ``--conf`` key is unknown or its value is not accepted."""


@dataclass(frozen=True)
class TumorConfig:
    """Everything that defines the tumour model and how it is trained and served.

    Attributes:
        labels: label names; the network outputs value ``i + 1`` for ``labels[i]`` (0 is background).
        modality: ``"ct"`` (clip to ``ct_window`` in HU, scale to [0, 1]) or ``"mr"`` (per-channel z-score over
            non-zero voxels).
        ct_window: lower and upper HU bound used by the ``ct`` preset.
        spacing: target voxel spacing in mm along the image's i, j, k axes.
        patch_size: training crop in voxels, and the smallest sliding window.
        window_voxels: largest sliding window at inference, validation and scoring, in voxels: the whole image in
            one window when it fits, else fewer, larger windows than the training patch.
        channels: number of image channels (sequences) the network takes.
        outline_names: expert outline names (RTSTRUCT ROI names in a PACS) and the label each stands for, e.g.
            ``(("GTV_Mass_CT", "tumor"),)``; names equal to a label (ignoring case) need no entry.
        sequences: names of the sequences of a multi-sequence case, in channel order (``t2f,t1c,t1n,t2w``); the
            first is the one annotators read and label. Empty: each image file is one case.
        network: ``"segresnet"`` (default) or ``"unet"``.
        features: feature maps of the first network level (network width).
        dropout: dropout probability used only by the Monte-Carlo uncertainty network.
        amp: mixed precision of the networks' forward pass (:mod:`lib.networks.precision`): ``auto`` (float16 on
            CUDA, bfloat16 on CPUs with native bfloat16, else float32), ``on`` (bfloat16 on any CPU) or ``off``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        checkpoint: starting checkpoint used until the first training run publishes weights ("" for none). By
            default (``auto``) the model shipped for the modality (``<app_dir>/pretrained/<modality>_tumor.pt``),
            when one exists and was trained for this configuration's architecture and preprocessing.
        model_dir: folder holding published weights and training runs.
        epochs: default number of epochs of one training run.
        click_epochs: epochs of the click-guided network trained after the segmentation network in the same run
            (0: do not train it).
        click_rounds: simulated corrective clicks per training iteration of the click-guided network.
        train_minutes: wall-clock budget of one training run (Train or Auto-Update), both networks together: each
            network stops after its last epoch that fits and publishes its best weights. The segmentation network
            may use ``SEGMENTATION_SHARE`` of it when the click network is trained too, which gets the rest.
        learning_rate: AdamW learning rate.
        val_split: fraction of labelled cases held out for validation (at least one case is kept for training).
        min_val_cases: validation cases a run needs to publish its best-validating epoch (or keep the served
            weights when none beats them); with fewer, validation is too noisy to choose by and the run publishes
            its final weights.
        samples_per_case: random patches drawn from a case per training iteration.
        cache_cases: preprocessed training cases kept in memory (the rest are loaded on demand).
        mc_samples: Monte-Carlo dropout passes per image for epistemic scoring.
        background_niceness: niceness added to the server's background jobs (training runs and scoring), so an
            annotator's requests get the CPU first when they share it; 0 runs them at the server's priority.
        tracking: ``"none"`` or ``"mlflow"`` (an sqlite store inside ``model_dir`` unless a URI is given).
        tracking_uri: MLflow tracking URI when ``tracking`` is ``"mlflow"``.
        users: the users file (``tumor-users``); login is on when it is given.
        auth: ``"auto"`` (login on when ``users`` is given) or ``"off"``, which lets the server listen beyond
            this machine without login (a warning is logged).
        token_minutes: lifetime of a login token.
        max_upload_mb: largest request body accepted, in MiB (413 above it).
        max_voxels: largest volume accepted (voxels times channels, read from the header before the voxels).
    """

    labels: tuple[str, ...] = ("tumor",)
    modality: str = "ct"
    ct_window: tuple[float, float] = (-200.0, 400.0)
    spacing: tuple[float, float, float] = (2.0, 2.0, 4.0)
    patch_size: tuple[int, int, int] = (96, 96, 32)
    window_voxels: int = 160 * 160 * 64
    channels: int = 1
    sequences: tuple[str, ...] = ()
    outline_names: tuple[tuple[str, str], ...] = ()
    network: str = "segresnet"
    features: int = 8
    dropout: float = 0.2
    device: str = "auto"
    amp: str = "auto"
    checkpoint: str = ""
    model_dir: str = ""
    epochs: int = 50
    click_epochs: int = 20
    click_rounds: int = 3
    train_minutes: float = 8.0
    learning_rate: float = 1e-3
    val_split: float = 0.2
    min_val_cases: int = 3
    samples_per_case: int = 4
    cache_cases: int = 16
    mc_samples: int = 5
    background_niceness: int = 10
    tracking: str = "none"
    tracking_uri: str = ""
    users: str = ""
    auth: str = AUTO
    token_minutes: float = 8 * 60.0
    max_upload_mb: int = 1024
    max_voxels: int = 256_000_000  # a 512x512 CT of up to 976 slices

    @property
    def num_classes(self) -> int:
        """Network output channels: background plus one per label."""
        return len(self.labels) + 1

    @property
    def outline_values(self) -> dict[str, int]:
        """Lower-case expert outline name -> label value: the labels' own names and the ``outline_names``."""
        values = {name.lower(): value for name, value in self.label_values.items()}
        return {**values, **{outline.lower(): self.label_values[label] for outline, label in self.outline_names}}

    @property
    def label_values(self) -> dict[str, int]:
        """Label name -> output value, 1..K in configuration order (the order 3D Slicer imports)."""
        return {name: i + 1 for i, name in enumerate(self.labels)}

    def torch_device(self) -> torch.device:
        """The device to run on; ``auto`` picks CUDA when available."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def published_path(self, model: str = SEGMENTATION) -> str:
        """Where finished training runs publish the served weights of ``model`` (segmentation or clicks)."""
        return os.path.join(self.model_dir, f"{model}.pt")

    def last_path(self, model: str = SEGMENTATION) -> str:
        """Where finished training runs keep the final weights of ``model``, which the next run continues from."""
        return os.path.join(self.model_dir, f"{model}_last.pt")

    def in_channels(self, model: str = SEGMENTATION) -> int:
        """Network input channels: the image's, plus the click guidance for the clicks model."""
        return self.channels + (len(GUIDANCE) if model == CLICKS else 0)

    def out_channels(self, model: str = SEGMENTATION) -> int:
        """Network output channels: background and each label, or background and the clicked object."""
        return 2 if model == CLICKS else self.num_classes

    def architecture(self, model: str = SEGMENTATION) -> dict[str, object]:
        """The settings that must match for a checkpoint of ``model`` to load into the network."""
        architecture: dict[str, object] = {
            "network": self.network,
            "features": self.features,
            "channels": self.channels,
            "labels": list(self.labels),
            # The network is only valid on images preprocessed as in training.
            "modality": self.modality,
            "spacing": list(self.spacing),
        }
        if self.modality == "ct":
            architecture["ct_window"] = list(self.ct_window)
        if model == CLICKS:
            architecture["guidance"] = list(GUIDANCE)
        return architecture


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
    if not number > 0:
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


def _labels(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    # Names are matched case-insensitively (to Slicer segment names), so they must differ in more than case.
    accepted = "comma-separated unique label names, e.g. 'tumor' or 'tumor,edema' (not 'background')"
    reserved = [n for n in names if n.lower() == "background" or n.endswith("_scribbles")]
    if not names or len({n.lower() for n in names}) != len(names) or reserved:
        raise _fail("labels", value, accepted)
    return names


def _sequences(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    accepted = "comma-separated unique sequence names of letters and digits, e.g. 't2f,t1c,t1n,t2w'"
    if not names or len(set(names)) != len(names) or not all(n.isalnum() for n in names):
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


def _dropout(text: str) -> float:
    number = float(text)
    if not 0.0 < number < 1.0:
        raise ValueError(text)
    return number


def _window(value: str) -> tuple[float, float]:
    low, high = _numbers("ct_window", value, 2, float, "two HU values 'low,high' with low < high")
    if not low < high:
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
    "network": lambda v: _choice("network", v, tuple(NETWORKS)),
    "features": lambda v: _scalar("features", v, _positive_int, "a positive integer"),
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
    "val_split": lambda v: _scalar("val_split", v, _fraction, "a fraction in [0, 1)"),
    "min_val_cases": lambda v: _scalar("min_val_cases", v, _positive_int, "a positive integer"),
    "samples_per_case": lambda v: _scalar("samples_per_case", v, _positive_int, "a positive integer"),
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


def shipped_checkpoint(config: TumorConfig, app_dir: str) -> str:
    """The starting model shipped with the app for ``config.modality``, or "" when there is none that fits.

    A shipped model fits when it was trained for exactly this configuration's architecture and preprocessing
    (:meth:`TumorConfig.architecture`); otherwise the app starts untrained, and says why in the log.
    """
    path = os.path.join(app_dir, SHIPPED_FOLDER, f"{config.modality}_tumor.pt")
    if not os.path.isfile(path):
        return ""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable shipped file must not stop the server
        logger.warning("The shipped model %s cannot be read (%s): starting untrained", path, e)
        return ""
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    if meta.get("architecture") != config.architecture():
        logger.info(
            "The shipped model %s does not fit this configuration (trained for %s, configured %s): starting untrained",
            path,
            meta.get("architecture"),
            config.architecture(),
        )
        return ""
    return path


def parse_config(conf: Mapping[str, str], app_dir: str) -> TumorConfig:
    """Parse ``--conf`` key/value strings into a :class:`TumorConfig`.

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
    config = TumorConfig(**values)  # type: ignore[arg-type]
    if not config.model_dir:
        config = dataclasses.replace(config, model_dir=os.path.join(app_dir, "model"))
    factor = NETWORKS[config.network]
    if any(p % factor for p in config.patch_size):
        raise _fail(
            "patch_size",
            ",".join(map(str, config.patch_size)),
            f"sizes divisible by {factor} for network {config.network}",
        )
    if config.network == "unet" and max(config.patch_size) < 2 * factor:
        # Four stride-2 levels leave 1x1x1 voxels at the bottom, where instance normalisation is undefined.
        raise _fail(
            "patch_size", ",".join(map(str, config.patch_size)), f"at least one size >= {2 * factor} for network unet"
        )
    if config.network == "segresnet" and config.features % 8:
        # SegResNet normalises with 8 groups, so every level's width must divide by 8.
        raise _fail("features", str(config.features), "a multiple of 8 for network segresnet")
    if config.checkpoint == AUTO:
        config = dataclasses.replace(config, checkpoint=shipped_checkpoint(config, app_dir))
    if config.checkpoint and not os.path.isfile(config.checkpoint):
        raise _fail("checkpoint", config.checkpoint, "the path of an existing checkpoint file")
    unknown = [label for _, label in config.outline_names if label not in config.labels]
    if unknown:
        raise _fail(
            "outline_names", str(unknown), f"pairs whose LABEL is one of the labels: {', '.join(config.labels)}"
        )
    if config.users and config.auth == "off":
        raise _fail("auth", "off", "auto when --conf users is given (login cannot be both on and off)")
    if config.users and not os.path.isfile(config.users):
        raise _fail("users", config.users, "an existing users file: create it with 'tumor-users --file PATH add NAME'")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail("device", config.device, "auto or cpu: this machine has no CUDA device")
    return config
