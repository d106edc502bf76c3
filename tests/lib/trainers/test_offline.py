"""Offline training on a labelled folder (how starting models are made) writes a checkpoint the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lib.checkpoint import read_checkpoint
from lib.trainers.offline import offline_config, train_offline
from tests.lib.conftest import TINY
from tests.support.folders import entries
from tests.synthetic import write_case


def test_offline_training_writes_a_checkpoint_and_its_stats(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    for i in range(2):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    out = tmp_path / "pretrained" / "ct_tumor.pt"
    conf = {**TINY, "epochs": "2", "samples_per_case": "2"}
    before = entries(studies)

    stats = train_offline(str(studies), str(out), conf)

    assert entries(studies) == before  # only read: no datastore index, lock file or label folder written into it
    assert stats["status"] == "DONE" and stats["epoch"] == 2 and list(stats["networks"]) == ["segmentation"]
    assert stats["networks"]["segmentation"]["cases"] == {"train": 1, "val": 1}
    _, meta = read_checkpoint(
        str(out), offline_config(conf, str(tmp_path)).plan
    )  # fits the configuration it was made for
    assert meta["run_id"] == stats["run_id"]
    assert json.loads(Path(f"{out}.json").read_text())["conf"] == conf


def test_offline_training_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    write_case(str(tmp_path / "studies"), "case0", seed=0, label_folder=str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="no usable labelled images"):
        train_offline(str(tmp_path / "studies"), str(tmp_path / "out.pt"), dict(TINY))
    assert not (tmp_path / "out.pt").exists()


def test_a_seeded_run_repeats_exactly(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    for i in range(3):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    conf = {**TINY, "epochs": "2", "samples_per_case": "2"}
    runs = [train_offline(str(studies), str(tmp_path / f"run{i}.pt"), conf, seed=7) for i in range(2)]
    losses = [run["networks"]["segmentation"]["train_loss"] for run in runs]
    assert runs[0]["best_metric"] == runs[1]["best_metric"] and losses[0] == losses[1] is not None
    weights = [torch.load(tmp_path / f"run{i}.pt", weights_only=True)["model"] for i in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert json.loads((tmp_path / "run0.pt.json").read_text())["seed"] == 7  # the record says how to repeat it


def test_offline_fine_tuning_of_a_starting_checkpoint_writes_it_however_few_its_cases(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    for i in range(2):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))
    conf = {**TINY, "epochs": "1", "samples_per_case": "2"}
    train_offline(str(studies), str(tmp_path / "start.pt"), conf)

    # The server keeps a starting model served below finetune_min_labels; an offline run writes what it was asked.
    stats = train_offline(str(studies), str(tmp_path / "tuned.pt"), {**conf, "checkpoint": str(tmp_path / "start.pt")})

    assert stats["networks"]["segmentation"]["published"] is True
    assert read_checkpoint(str(tmp_path / "tuned.pt"), offline_config(conf, str(tmp_path)).plan)[1][
        "starting_model"
    ] == ("start.pt")
