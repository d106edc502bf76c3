"""A run's cases (which labelled cases are usable, the stable split), its stats as /info reads them, and the
largest-component validation metric."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from lib.atomic import write_json
from lib.config import AppConfig
from lib.datastore import TumorDatastore
from lib.trainers.cases import case_id, split_cases, usable_cases
from lib.trainers.network_trainer import largest_components
from lib.trainers.run import TrainingRun
from lib.trainers.run_stats import read_stats, settle_stats
from lib.transforms.pipeline import LABEL, PRED
from tests.synthetic import write_case, write_sequences


def test_unusable_labels_are_skipped_with_reason(config: AppConfig, tmp_path: Path, caplog) -> None:
    studies = tmp_path / "studies"
    final = studies / "labels" / "final"
    good = write_case(str(studies), "good", seed=1, label_folder=str(final))
    write_case(str(studies), "shifted", seed=2, label_folder=str(tmp_path / "truth"))
    write_case(str(studies), "values", seed=3, label_folder=str(tmp_path / "truth"))
    # Labels placed on disk behind the server's back: one on another grid, one with a value outside 0..K.
    wrong_grid = sitk.Image(12, 12, 12, sitk.sitkUInt8)
    sitk.WriteImage(wrong_grid, str(final / "shifted.nii.gz"))
    three = sitk.ReadImage(str(tmp_path / "truth" / "values.nii.gz")) * 3
    sitk.WriteImage(three, str(final / "values.nii.gz"))
    datastore = TumorDatastore(str(studies), config, extensions=["*.nii.gz"])

    with caplog.at_level(logging.WARNING):
        usable = usable_cases(datastore, config)

    assert [os.path.basename(d["image"]) for d in usable] == ["good.nii.gz"]
    assert os.path.samefile(usable[0]["label"], good.label_path)
    assert "Skipping shifted.nii.gz" in caplog.text and "size" in caplog.text
    assert "Skipping values.nii.gz" in caplog.text and "values [3]" in caplog.text


def test_no_usable_label_is_a_clear_error(config: AppConfig, tmp_path: Path) -> None:
    write_case(str(tmp_path / "studies"), "case", seed=1, label_folder=str(tmp_path / "truth"))
    datastore = TumorDatastore(str(tmp_path / "studies"), config, extensions=["*.nii.gz"])
    with pytest.raises(ValueError, match="no usable labelled images: submit at least one label"):
        usable_cases(datastore, config)


@pytest.mark.parametrize(
    ("cases", "val_split", "train", "val"),
    [(1, 0.2, 1, 0), (2, 0.2, 1, 1), (5, 0.2, 4, 1), (10, 0.3, 7, 3), (4, 0.0, 4, 0)],
)
def test_split_keeps_training_cases(config: AppConfig, cases: int, val_split: float, train: int, val: int) -> None:
    datalist = [{"image": f"{i}", "label": f"{i}"} for i in range(cases)]
    split = split_cases(datalist, val_split)
    assert (len(split[0]), len(split[1])) == (train, val)
    assert sorted(split[0] + split[1], key=lambda d: d["image"]) == datalist  # each case once


def test_cases_stored_as_folders_of_sequences_are_distinct_cases(make_config, tmp_path: Path) -> None:
    """Every such case's first file is ``<case>/t2f.nii.gz``: named by its file name alone, all of them were one
    case, all in validation (a run of 3 such cases had 0 training cases and failed), and a checkpoint recorded one."""
    studies = tmp_path / "studies"
    names = ("t2f", "t1c")
    for i in range(5):
        write_sequences(
            str(studies), f"pat{i}", seed=i, sequences=names, layout="/", label_folder=str(studies / "labels" / "final")
        )
    config = make_config(sequences="t2f,t1c", modality="mr")
    datastore = TumorDatastore(str(studies), config, auto_reload=False)

    usable = usable_cases(datastore, config)
    train, val = split_cases(usable, 0.2, config.sequences)

    assert len(usable) == 5 and (len(train), len(val)) == (4, 1)
    assert sorted(case_id(c, config.sequences) for c in usable) == [f"pat{i}/t2f.nii.gz" for i in range(5)]
    assert (
        case_id({"image": str(studies / "pat0-t2f.nii.gz")}, config.sequences) == "pat0-t2f.nii.gz"
    )  # flat: as before
    assert case_id({"image": str(studies / "STS_001.nii.gz")}) == "STS_001.nii.gz"


def test_tracking_is_off_unless_opted_in(make_config) -> None:
    from lib.networks.descriptions import SEGMENTATION
    from lib.trainers.network_trainer import NetworkTrainer

    assert TrainingRun(make_config()).config()["tracking"][0] == "None"
    config = make_config(tracking="mlflow")
    assert TrainingRun(config).config()["tracking"][0] == "mlflow"
    assert NetworkTrainer(config, SEGMENTATION).tracking_uri.startswith("sqlite:///")
    assert "tracking_uri" not in TrainingRun(config).config()  # the server's store, not an option clients see
    assert np.isclose(TrainingRun(make_config(learning_rate="0.002")).config()["learning_rate"], 2e-3)


def test_stats_report_running_only_while_the_server_runs_the_process(config: AppConfig, monkeypatch) -> None:
    from monailabel.utils.async_tasks import utils as tasks

    trainer = TrainingRun(config)
    assert trainer.stats() == {}  # before any run
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_json(trainer.stats_path, {"status": "RUNNING", "pid": process.pid, "epoch": 1})
        monkeypatch.setitem(tasks.background_processes, "train", {"task": process})
        assert trainer.stats()["status"] == "RUNNING"
        settle_stats(trainer.stats_path)  # a running run is left alone
        assert read_stats(trainer.stats_path)["status"] == "RUNNING"

        # DELETE /train/ pops the run from the registry before the killed process has exited.
        tasks.background_processes["train"].pop("task")
        assert process.poll() is None
        assert trainer.stats() == {"status": "STOPPED", "pid": process.pid, "epoch": 1}
    finally:
        process.kill()
        process.wait()
    # A run left behind by an earlier server (empty registry, pid gone) is stopped too, and the file says so.
    assert trainer.stats()["status"] == "STOPPED"
    settle_stats(trainer.stats_path)
    assert json.loads(Path(trainer.stats_path).read_text())["status"] == "STOPPED"


def test_split_is_stable_as_labels_are_added(config: AppConfig) -> None:
    datalist: list[dict[str, str]] = []
    previous_val, previous_train, moved = set(), set(), 0
    for i in range(30):
        new = f"/studies/case{i:02d}.nii.gz"
        datalist = [*datalist, {"image": new, "label": "x"}]
        train, val = split_cases(datalist, 0.2)
        val_names, train_names = {d["image"] for d in val}, {d["image"] for d in train}
        assert len(train_names | val_names) == i + 1 and not train_names & val_names
        if len(val_names) == len(previous_val):  # same share: only the new case can join validation
            assert val_names <= previous_val | {new}
        else:  # the share grew by one case: at most one training case moves to validation
            assert len(val_names) == len(previous_val) + 1 and len(val_names & previous_train) <= 1
        moved += len(val_names & previous_train)
        previous_val, previous_train = val_names, train_names
    assert moved <= 6  # 30 cases: the validation share grows from 1 to 6 cases


def test_validation_also_scores_each_label_reduced_to_its_largest_component() -> None:
    tumour = torch.zeros(10, 10, 10, dtype=torch.bool)
    tumour[1:5, 1:5, 1:5] = True
    speck = torch.zeros_like(tumour)
    speck[8, 8, 8] = True
    prediction = torch.stack([~(tumour | speck), tumour | speck]).float()
    label = torch.stack([~tumour, tumour]).float()

    predictions, labels = largest_components(2)([{PRED: prediction, LABEL: label}])

    assert torch.equal(predictions[0], label)  # the speck became background
    assert labels[0] is label
    assert torch.equal(prediction[1].bool(), tumour | speck)  # the evaluator's output is untouched
