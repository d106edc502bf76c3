"""Replay cases (``replay_studies``) train beside a run's own cases, at most as many, and never validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lib.checkpoint import read_checkpoint
from lib.config import AppConfig
from lib.datastore import TumorDatastore
from lib.networks.descriptions import SEGMENTATION
from lib.trainers import TrainingRun
from lib.trainers.cases import case_id
from lib.trainers.replay import replay_cases
from tests.support.folders import entries
from tests.synthetic import write_case


def labelled(folder: Path, names: list[str]) -> str:
    for i, name in enumerate(names):
        write_case(str(folder), name, seed=i, label_folder=str(folder / "labels" / "final"))
    return str(folder)


def own(names: list[str]) -> list[dict[str, str]]:
    return [{"image": f"/studies/{n}.nii.gz", "label": f"/studies/labels/final/{n}.nii.gz"} for n in names]


def test_a_run_draws_at_most_as_many_replay_cases_as_it_has_own_training_cases(make_config, tmp_path: Path) -> None:
    replay = labelled(tmp_path / "replay", ["rep0", "rep1", "rep2", "rep3", "case0"])
    # An unusable replay case (label off its image's grid) is skipped, never drawn.
    write_case(str(tmp_path / "replay"), "bad", seed=9)
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(tmp_path / "replay/labels/final/bad.nii.gz")
    )
    config: AppConfig = make_config(replay_studies=replay)

    two = replay_cases(config, own(["case0", "case1"]))
    assert len(two) == 2 and [case_id(c) for c in two] == sorted(case_id(c) for c in two)
    assert {case_id(c) for c in two} <= {"rep0.nii.gz", "rep1.nii.gz", "rep2.nii.gz", "rep3.nii.gz"}  # not case0
    assert all(c["label"].endswith(f"labels/final/{case_id(c)}") for c in two)
    assert replay_cases(config, own(["case0", "case1"])) == two  # the same labels draw the same cases
    many = replay_cases(config, own([f"case{i}" for i in range(9)]))
    assert {case_id(c) for c in many} == {"rep0.nii.gz", "rep1.nii.gz", "rep2.nii.gz", "rep3.nii.gz"}
    assert replay_cases(config, []) == [] and replay_cases(make_config(), own(["case0"])) == []


def test_the_replay_folder_is_only_read(make_config, tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    labelled(replay, ["rep0", "rep1"])
    write_case(str(replay), "unlabelled", seed=5)
    before = entries(replay)
    assert not any(name.endswith(("datastore_v2.json", ".lock", "original")) for name in before)

    drawn = replay_cases(make_config(replay_studies=str(replay)), own(["case0", "case1", "case2"]))

    assert entries(replay) == before  # no index, lock file or label folder written into it
    assert drawn == [
        {"image": str(replay / f"{n}.nii.gz"), "label": str(replay / "labels" / "final" / f"{n}.nii.gz")}
        for n in ("rep0", "rep1")
    ]
    assert all(Path(c["image"]).is_file() and Path(c["label"]).is_file() for c in drawn)  # usable after the listing


def test_replay_cases_train_but_never_validate(make_config, tmp_path: Path) -> None:
    studies = labelled(tmp_path / "studies", ["case0", "case1", "case2"])
    replay = labelled(tmp_path / "replay", ["rep0", "rep1", "rep2"])
    config: AppConfig = make_config(replay_studies=replay, epochs="1", click_epochs="0", samples_per_case="2")

    stats = TrainingRun(config)({}, TumorDatastore(studies, config))

    assert stats["status"] == "DONE" and stats["replay_cases"] == 2  # beside the 2 own training cases
    assert stats["networks"]["segmentation"]["cases"] == {"train": 4, "val": 1}
    _, meta = read_checkpoint(SEGMENTATION.published_path(config.model_dir), config.plan)
    assert len(meta["validated_on"]) == 1 and meta["validated_on"][0].startswith("case")
    assert sum(name.startswith("rep") for name in meta["trained_on"]) == 2
    assert sum(name.startswith("case") for name in meta["trained_on"]) == 2
