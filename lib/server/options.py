"""Checks on the options a client sends with infer and train requests: only documented keys, well-formed values.

Keys that name files, code or devices (``image``, ``session``, ``device``, ``bundle_path``, ``tracking_uri``...)
are not options a client may set; the server sets them itself.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from lib.datastore.names import FINAL, TAGS
from lib.datastore.validation import segment_values
from lib.shown import shown
from lib.trainers.run_options import TRAIN_VALUES, first_item, flag_option, tracking_option, train_value
from lib.transforms.formats import VOLUME_SUFFIXES

RESULT_DTYPES = ("uint8", "uint16", "int16", "int32", "float32")
# Options of 3D Slicer's module and MONAI Label's clients, beyond each model's own config.
_INFER_COMMON = {
    "client_id",
    "result_extension",
    "result_dtype",
    "label_info",
    "selected_label_name",
    "roi",
    "foreground",
    "background",
    "label",
    "slice",
    "save_label",
    "label_tag",
    "reset_state",
}
# Training options a client may set; the others in a trainer's config are fixed by the server's --conf.
TRAIN_OPTIONS = {
    "max_epochs",
    "train_minutes",
    "val_split",
    "learning_rate",
    "finetune_learning_rate",
    "tracking",
    "multi_gpu",
    "client_id",
    "model",
}


class OptionsError(ValueError):
    """An option is unknown or malformed; the message names it."""


MAX_CLIENT_ID = 128
MAX_CLICKS = 64  # clicks in one infer request, all labels together


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON accepts")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is out of the range of a number")
    return number


def parse_json_object(text: str | None, what: str) -> dict[str, Any]:
    """The JSON object in ``text`` ("" or None: empty). ``NaN``, ``Infinity`` and numbers beyond a float's range
    are refused: Python reads them, but they cannot be sent back as JSON, so a stored one would break every
    reply that shows it."""
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as e:
        raise OptionsError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise OptionsError(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise OptionsError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def check_client_id(options: Mapping[str, Any]) -> None:
    """A client's ``client_id`` (3D Slicer sends one with every request) is text of at most ``MAX_CLIENT_ID``
    characters: it is recorded and shown, and a training run is started with it on its command line."""
    value = options.get("client_id")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_CLIENT_ID):
        raise OptionsError(f"client_id must be text of at most {MAX_CLIENT_ID} characters")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _points(key: str, value: Any) -> int:
    """The number of clicks under ``key``."""
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(_is_int(c) for c in p) for p in value
    ):
        raise OptionsError(f"{key} must be a list of [i, j, k] integer voxel indices")
    return len(value)


def check_infer_options(options: Mapping[str, Any], model_config: Mapping[str, Any], labels: Sequence[str]) -> None:
    """Refuse infer options outside the model's config and the documented ones, or malformed ones.

    Args:
        options: the request's ``params``.
        model_config: the model's own config (``/info`` ``models[model].config``); where it lists choices, the
            option must be one of them.
        labels: the app's label names; 3D Slicer sends each label's clicks under its name.
    """
    check_client_id(options)
    accepted = _INFER_COMMON | set(model_config) | set(labels)
    unknown = sorted(set(options) - accepted)
    if unknown:
        names = ", ".join(shown(k) for k in unknown)
        raise OptionsError(f"infer options {names} are not accepted; accepted: {', '.join(sorted(accepted))}")
    for key, choices in model_config.items():
        if key in options and isinstance(choices, list) and options[key] not in choices:
            raise OptionsError(f"{key} {shown(options[key])} is not accepted; accepted: {choices}")
        if key in options and isinstance(choices, bool) and not isinstance(options[key], bool):
            raise OptionsError(f"{key} must be true or false")
    clicks = sum(_points(key, options[key]) for key in ("foreground", "background", *labels) if key in options)
    if clicks > MAX_CLICKS:
        raise OptionsError(
            f"{clicks} clicks in one request; at most {MAX_CLICKS} are accepted (the time to refine grows with each)"
        )
    if "label" in options and options["label"] not in (*labels, "background"):
        raise OptionsError(f"label {shown(options['label'])} is not a label of this app: {', '.join(labels)}")
    if "roi" in options and not (
        isinstance(options["roi"], list) and len(options["roi"]) in (0, 6) and all(_is_int(c) for c in options["roi"])
    ):
        raise OptionsError("roi must be [] or six integers [i0, i1, j0, j1, k0, k1]")
    if "slice" in options and not _is_int(options["slice"]):
        raise OptionsError("slice must be an integer")
    if "label_info" in options:
        try:
            segment_values(options["label_info"])
        except ValueError as e:
            raise OptionsError(str(e)) from None
    if "selected_label_name" in options and not isinstance(options["selected_label_name"], str):
        raise OptionsError("selected_label_name must be text")
    _choice(options, "result_extension", VOLUME_SUFFIXES)
    _choice(options, "result_dtype", RESULT_DTYPES)
    _choice(options, "label_tag", TAGS)
    if options.get("label_tag") == FINAL:
        raise OptionsError(
            "label_tag final is not accepted: a saved inference result is an 'original' label; "
            "final labels are submitted by an annotator (PUT /datastore/label)"
        )
    for key in ("save_label", "reset_state"):
        if key in options and not isinstance(options[key], bool):
            raise OptionsError(f"{key} must be true or false")


def check_train_options(options: Mapping[str, Any], trainer_config: Mapping[str, Any]) -> None:
    """Refuse training options other than :data:`TRAIN_OPTIONS`, except those equal to the server's own value.

    3D Slicer sends the trainer's whole config back (first item of lists): fixed options such as ``device`` are
    accepted when they hold the server's value, and refused when they ask for anything else.
    """
    check_client_id(options)
    for key, value in options.items():
        if key in TRAIN_OPTIONS:
            continue
        if key in trainer_config:
            fixed = trainer_config[key]
            fixed_value = first_item(fixed)
            if value == fixed_value or value == fixed:
                continue
            raise OptionsError(f"training option {key} is fixed by the server's configuration ({shown(fixed_value)})")
        raise OptionsError(
            f"training option {shown(key)} is not accepted; accepted: {', '.join(sorted(TRAIN_OPTIONS))}"
        )
    try:  # as the run will read them
        for key in TRAIN_VALUES.keys() & options.keys():
            train_value(key, options[key])
        if "multi_gpu" in options:
            flag_option("multi_gpu", options["multi_gpu"])
        if "tracking" in options:
            tracking_option(options["tracking"])
    except ValueError as e:
        raise OptionsError(str(e)) from None


def _choice(options: Mapping[str, Any], key: str, choices: Sequence[str]) -> None:
    if key in options and options[key] not in choices:
        raise OptionsError(f"{key} {shown(options[key])} is not accepted; accepted: {', '.join(choices)}")
