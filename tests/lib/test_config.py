"""Parsing of ``--conf`` into the typed configuration."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from lib.config import AppConfig, ConfigError, parse_config
from lib.config.parse import PARSERS, PLAN_KEYS


def test_defaults_parse(tmp_path: Path) -> None:
    config = parse_config({}, str(tmp_path))
    assert config == AppConfig(model_dir=os.path.join(str(tmp_path), "model"))
    assert config.plan.labels == ("tumor",)
    assert config.plan.label_values == {"tumor": 1}
    assert config.plan.num_classes == 2


def test_model_dir_defaults_to_app_model_folder(tmp_path: Path) -> None:
    assert parse_config({"labels": "tumor"}, str(tmp_path)).model_dir == os.path.join(str(tmp_path), "model")


@pytest.mark.parametrize(
    ("key", "raw", "attribute", "expected"),
    [
        ("labels", "tumor,edema", "labels", ("tumor", "edema")),
        ("labels", " tumor , edema ", "labels", ("tumor", "edema")),
        ("labels", "tumor,edema", "label_values", {"tumor": 1, "edema": 2}),
        ("labels", "tumor,edema", "num_classes", 3),
        ("modality", "MR", "modality", "mr"),
        ("modality", "ct", "modality", "ct"),
        ("ct_window", "-100,300", "ct_window", (-100.0, 300.0)),
        ("spacing", "1,1,2.5", "spacing", (1.0, 1.0, 2.5)),
        ("spacing", "2", "spacing", (2.0, 2.0, 2.0)),
        ("spacing", "0.8x0.8x3", "spacing", (0.8, 0.8, 3.0)),
        ("patch_size", "64,64,32", "patch_size", (64, 64, 32)),
        ("patch_size", "32", "patch_size", (32, 32, 32)),
        ("channels", "2", "channels", 2),
        ("network", "unet", "network", "unet"),
        ("network", "SegResNet", "network", "segresnet"),
        ("features", "8", "features", 8),
        ("features", "24", "features", 24),
        ("dropout", "0.5", "dropout", 0.5),
        ("device", "cpu", "device", "cpu"),
        ("device", "AUTO", "device", "auto"),
        ("amp", "off", "amp", "off"),
        ("amp", "ON", "amp", "on"),
        ("epochs", "3", "epochs", 3),
        ("train_minutes", "2.5", "train_minutes", 2.5),
        ("learning_rate", "1e-3", "learning_rate", 1e-3),
        ("finetune_learning_rate", "5e-5", "finetune_learning_rate", 5e-5),
        ("finetune_min_labels", "1", "finetune_min_labels", 1),
        ("val_split", "0", "val_split", 0.0),
        ("val_split", "0.25", "val_split", 0.25),
        ("min_val_cases", "1", "min_val_cases", 1),
        ("background_niceness", "0", "background_niceness", 0),
        ("background_niceness", "19", "background_niceness", 19),
        ("samples_per_case", "2", "samples_per_case", 2),
        ("foreground_share", "0.33", "foreground_share", 0.33),
        ("foreground_share", "1", "foreground_share", 1.0),
        ("cache_cases", "0", "cache_cases", 0),
        ("augmentation", "Spatial", "augmentation", "spatial"),
        ("tta", "mirror", "tta", "mirror"),
        ("mc_samples", "3", "mc_samples", 3),
        ("tracking", "mlflow", "tracking", "mlflow"),
        ("tracking_uri", "sqlite:///x.db", "tracking_uri", "sqlite:///x.db"),
        ("tracking_uri", "http://mlflow:5000", "tracking_uri", "http://mlflow:5000"),
        ("model_dir", "/somewhere/models", "model_dir", "/somewhere/models"),
        ("auth", "OFF", "auth", "off"),
        ("sequences", "t2f, t1c,t1n,t2w", "sequences", ("t2f", "t1c", "t1n", "t2w")),
        (
            "outline_names",
            "GTV_Mass_CT=tumor, GTV=tumor",
            "outline_names",
            (("GTV_Mass_CT", "tumor"), ("GTV", "tumor")),
        ),
        ("token_minutes", "30", "token_minutes", 30.0),
        ("max_upload_mb", "64", "max_upload_mb", 64),
        ("max_voxels", "1000", "max_voxels", 1000),
    ],
)
def test_key_parses_valid_value(tmp_path: Path, key: str, raw: str, attribute: str, expected: object) -> None:
    conf = {key: raw}
    if key == "network" and raw.lower() == "unet":
        conf["patch_size"] = "96,96,32"  # the default 96,96,32 is divisible by 16 as unet needs
    config = parse_config(conf, str(tmp_path))
    # The plan's keys land in the plan (what checkpoints record), the others in the run-time settings.
    owner = config.plan if key in PLAN_KEYS else config
    assert getattr(owner, attribute) == expected


def test_unet_accepts_any_width(tmp_path: Path) -> None:
    config = parse_config({"network": "unet", "features": "4", "patch_size": "32,16,16"}, str(tmp_path))
    assert (config.plan.network, config.plan.features, config.patch_size) == ("unet", 4, (32, 16, 16))


def test_unet_patch_too_small_for_its_depth_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--conf patch_size '16,16,16' .* at least one size >= 32 for network unet"):
        parse_config({"network": "unet", "patch_size": "16,16,16"}, str(tmp_path))


def test_a_checkpoint_named_by_path_is_checked_at_start_up(tmp_path: Path) -> None:
    path = ship(tmp_path, parse_config({}, str(tmp_path)), name="start.pt")
    assert parse_config({"checkpoint": str(path)}, str(tmp_path)).checkpoint == str(path)
    with pytest.raises(ConfigError, match=f"^--conf checkpoint {path} cannot be served: .*trained for"):
        parse_config({"checkpoint": str(path), "features": "16"}, str(tmp_path))  # another network's weights
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"weights")
    with pytest.raises(ConfigError, match=f"^--conf checkpoint {junk} cannot be served: cannot read checkpoint"):
        parse_config({"checkpoint": str(junk)}, str(tmp_path))


def test_server_mode_is_accepted_and_ignored(tmp_path: Path) -> None:
    assert parse_config({"server_mode": "true"}, str(tmp_path)) == parse_config({}, str(tmp_path))


def test_every_parser_key_is_a_config_or_plan_field() -> None:
    fields = {f.name for f in dataclasses.fields(AppConfig)} - {"plan"}
    assert set(PARSERS) == fields | set(PLAN_KEYS)
    assert not fields & set(PLAN_KEYS)  # each key has one home


def test_unknown_key_names_key_and_lists_accepted_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size is not a known key") as error:
        parse_config({"batch_size": "4"}, str(tmp_path))
    accepted = str(error.value).split("accepted keys:")[1]
    assert {k.strip() for k in accepted.split(",")} == set(PARSERS)


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"modality": "pet"}, "modality"),
        ({"spacing": "1,2"}, "spacing"),
        ({"spacing": "-1,1,1"}, "spacing"),
        ({"spacing": "0"}, "spacing"),
        ({"spacing": "a,b,c"}, "spacing"),
        ({"spacing": "inf,1,1"}, "spacing"),  # a server started, and trained on nothing
        ({"spacing": "nan"}, "spacing"),
        ({"patch_size": "96,96"}, "patch_size"),
        ({"patch_size": "96,96,0"}, "patch_size"),
        ({"patch_size": "96.5,96,32"}, "patch_size"),
        ({"channels": "0"}, "channels"),
        ({"channels": "two"}, "channels"),
        ({"network": "vit"}, "network"),
        ({"features": "-4"}, "features"),
        ({"network": "segresnet", "features": "4"}, "features"),
        ({"network": "segresnet", "features": "12"}, "features"),
        ({"features": "100000000"}, "features"),  # tens of gigabytes of weights: refused, not run out of memory
        ({"ensemble": "100000"}, "ensemble"),
        ({"ensemble": "0"}, "ensemble"),
        ({"dropout": "1.5"}, "dropout"),
        ({"dropout": "0"}, "dropout"),
        ({"labels": ""}, "labels"),
        ({"labels": ","}, "labels"),
        ({"labels": "tumor,tumor"}, "labels"),
        ({"labels": "tumor,,edema"}, "labels"),  # a typo, not two labels
        ({"labels": "tumor,"}, "labels"),
        ({"sequences": "t1n,,t2w"}, "sequences"),
        ({"sequences": "T1N,t1n"}, "sequences"),
        ({"train_minutes": "inf"}, "train_minutes"),
        ({"ct_window": "-inf,inf"}, "ct_window"),
        ({"labels": "background"}, "labels"),
        ({"labels": "tumor,Background"}, "labels"),
        ({"labels": "tumor_scribbles"}, "labels"),
        ({"ct_window": "400,-200"}, "ct_window"),
        ({"ct_window": "100,100"}, "ct_window"),
        ({"ct_window": "100"}, "ct_window"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"amp": "fp16"}, "amp"),
        ({"epochs": "abc"}, "epochs"),
        ({"epochs": "0"}, "epochs"),
        ({"train_minutes": "0"}, "train_minutes"),
        ({"train_minutes": "soon"}, "train_minutes"),
        ({"learning_rate": "0"}, "learning_rate"),
        ({"finetune_learning_rate": "-1"}, "finetune_learning_rate"),
        ({"val_split": "1.0"}, "val_split"),
        ({"val_split": "-0.1"}, "val_split"),
        ({"min_val_cases": "0"}, "min_val_cases"),
        ({"finetune_min_labels": "0"}, "finetune_min_labels"),
        ({"finetune_min_labels": "two"}, "finetune_min_labels"),
        ({"background_niceness": "20"}, "background_niceness"),
        ({"background_niceness": "-1"}, "background_niceness"),
        ({"samples_per_case": "0"}, "samples_per_case"),
        ({"foreground_share": "1.5"}, "foreground_share"),
        ({"foreground_share": "-0.1"}, "foreground_share"),
        ({"foreground_share": "nan"}, "foreground_share"),
        ({"foreground_share": "half"}, "foreground_share"),
        ({"cache_cases": "-1"}, "cache_cases"),
        ({"mc_samples": "1"}, "mc_samples"),
        ({"tracking": "wandb"}, "tracking"),
        ({"tracking_uri": "/tmp/mlruns"}, "tracking_uri"),
        ({"tracking_uri": "file:///tmp/mlruns"}, "tracking_uri"),
        ({"checkpoint": "/nonexistent.pt"}, "checkpoint"),
        ({"network": "segresnet", "patch_size": "20,20,20"}, "patch_size"),
        ({"network": "unet", "patch_size": "24,24,24"}, "patch_size"),
        ({"auth": "on"}, "auth"),
        ({"sequences": "t2f,t2f"}, "sequences"),
        ({"outline_names": "GTV_Mass"}, "outline_names"),
        ({"outline_names": "GTV_Mass=edema"}, "outline_names"),
        ({"sequences": "t2f,../x"}, "sequences"),
        ({"sequences": "t2f,t1c", "channels": "3"}, "channels"),
        ({"token_minutes": "0"}, "token_minutes"),
        ({"max_upload_mb": "-1"}, "max_upload_mb"),
        ({"max_voxels": "lots"}, "max_voxels"),
        ({"users": "/nonexistent/users.json"}, "users"),
        ({"replay_studies": "/nonexistent/studies"}, "replay_studies"),
    ],
)
def test_bad_value_raises_naming_key(tmp_path: Path, conf: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^--conf {key} .* is not accepted: expected "):
        parse_config(conf, str(tmp_path))


@pytest.mark.parametrize(
    ("network", "accepted"),
    [("segresnet", "divisible by 8 for network segresnet"), ("unet", "divisible by 16 for network unet")],
)
def test_patch_size_error_says_required_factor(tmp_path: Path, network: str, accepted: str) -> None:
    with pytest.raises(ConfigError, match=accepted):
        parse_config({"network": network, "patch_size": "20,20,20"}, str(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_refused_without_cuda(tmp_path: Path, device: str) -> None:
    with pytest.raises(ConfigError, match="--conf device .*no CUDA device"):
        parse_config({"device": device}, str(tmp_path))


def test_labels_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    # Uploaded segments are matched to labels case-insensitively (remap_label), so 'Tumor' and 'tumor' would be
    # indistinguishable there: the configuration must refuse them as duplicates.
    with pytest.raises(ConfigError, match="--conf labels"):
        parse_config({"labels": "Tumor,tumor"}, str(tmp_path))


def ship(app_dir: Path, config: AppConfig, name: str = "ct_tumor.pt") -> Path:
    """Write a starting model for ``config`` where the app looks for shipped models."""
    from lib.networks import build_network
    from tests.support.checkpoints import publish_checkpoint

    path = app_dir / "pretrained" / name
    publish_checkpoint(build_network(config.plan).state_dict(), {"run_id": "shipped"}, str(path), config)
    return path


def test_shipped_model_is_the_default_starting_checkpoint_when_it_fits(tmp_path: Path) -> None:
    assert parse_config({}, str(tmp_path)).checkpoint == ""  # nothing shipped
    shipped = ship(tmp_path, parse_config({}, str(tmp_path)))

    assert parse_config({}, str(tmp_path)).checkpoint == str(shipped)
    assert parse_config({"checkpoint": "AUTO"}, str(tmp_path)).checkpoint == str(shipped)
    assert parse_config({"checkpoint": "none"}, str(tmp_path)).checkpoint == ""  # opted out
    assert parse_config({"modality": "mr"}, str(tmp_path)).checkpoint == ""  # the CT model is not for MR


@pytest.mark.parametrize("conf", [{"features": "16"}, {"spacing": "1,1,1"}, {"ct_window": "-100,200"}])
def test_shipped_model_for_other_architecture_or_preprocessing_is_not_used(
    tmp_path: Path, conf: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ship(tmp_path, parse_config({}, str(tmp_path)))
    with caplog.at_level("INFO"):
        assert parse_config(conf, str(tmp_path)).checkpoint == ""
    assert "cannot be used" in caplog.text and "was trained for" in caplog.text


def test_a_shipped_ensemble_sets_the_default_ensemble_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shipped = ship(tmp_path, parse_config({"ensemble": "2"}, str(tmp_path)))

    default = parse_config({}, str(tmp_path))
    assert (default.plan.ensemble, default.checkpoint) == (2, str(shipped))
    assert parse_config({"checkpoint": "none"}, str(tmp_path)).plan.ensemble == 1  # nothing to follow
    with caplog.at_level("INFO"):
        assert parse_config({"ensemble": "1"}, str(tmp_path)).checkpoint == ""  # said otherwise: not used
    assert "'ensemble': 2" in caplog.text


def test_unreadable_shipped_model_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "ct_tumor.pt").write_bytes(b"not a checkpoint")
    assert parse_config({}, str(tmp_path)).checkpoint == ""
    assert "cannot read checkpoint ct_tumor.pt" in caplog.text


def test_login_cannot_be_both_on_and_off(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text("{}")
    assert parse_config({"users": str(users)}, str(tmp_path)).users == str(users)
    with pytest.raises(ConfigError, match="^--conf auth 'off' is not accepted: expected auto when --conf users"):
        parse_config({"users": str(users), "auth": "off"}, str(tmp_path))


def test_sequences_set_the_channels(tmp_path: Path) -> None:
    assert parse_config({"sequences": "t2f,t1c,t1n,t2w"}, str(tmp_path)).plan.channels == 4
    assert parse_config({"sequences": "t2f,t1c", "channels": "2"}, str(tmp_path)).plan.channels == 2
