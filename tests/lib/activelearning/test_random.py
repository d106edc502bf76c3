"""The random strategy serves an image whenever one is unlabelled, however recently each was served."""

from __future__ import annotations

import time
from pathlib import Path

from monailabel.interfaces.datastore import DefaultLabelTag

from lib.activelearning.random import RandomLeastRecent
from lib.config import AppConfig
from lib.datastore import TumorDatastore
from tests.synthetic import write_case


def test_images_all_served_this_second_are_still_served(tmp_path: Path, config: AppConfig) -> None:
    # MONAI Label's weights (seconds since served) were all 0 here: "Total of weights must be greater than zero".
    for i in range(2):
        write_case(str(tmp_path / "studies"), f"case{i}", seed=i, label_folder=str(tmp_path / "labels"))
    store = TumorDatastore(str(tmp_path / "studies"), config, auto_reload=False)
    now = int(time.time())
    store.update_image_info("case0", {"strategy": {"random": {"ts": now + 5}}})  # a clock set back since
    store.update_image_info("case1", {"strategy": {"random": {"ts": now}}})
    strategy = RandomLeastRecent()

    picked = {strategy({"strategy": "random"}, store)["id"] for _ in range(40)}

    assert picked == {"case0", "case1"}  # each keeps a chance


def test_the_least_recently_served_image_is_the_likeliest(tmp_path: Path, config: AppConfig) -> None:
    for i in range(2):
        write_case(str(tmp_path / "studies"), f"case{i}", seed=i, label_folder=str(tmp_path / "labels"))
    store = TumorDatastore(str(tmp_path / "studies"), config, auto_reload=False)
    store.update_image_info("case1", {"strategy": {"random": {"ts": int(time.time())}}})  # case0 never served

    picks = [RandomLeastRecent()({"strategy": "random"}, store)["id"] for _ in range(50)]

    assert picks.count("case0") >= 45


def test_no_unlabelled_image_is_no_sample(tmp_path: Path, config: AppConfig) -> None:
    write_case(str(tmp_path / "studies"), "case0", seed=0, label_folder=str(tmp_path / "labels"))
    store = TumorDatastore(str(tmp_path / "studies"), config, auto_reload=False)
    store.save_label("case0", str(tmp_path / "labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, {})
    assert RandomLeastRecent()({"strategy": "random"}, store) is None
