"""A training run through the real server, driven by 3D Slicer's own client: both networks in one run, a progress
bar that moves once from 0 to 100%, Stop in either phase, and several annotators pressing Train."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lib.evaluation.cli import main
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION
from tests.apps.conftest import TINY
from tests.apps.test_server import LABEL_INFO, poll
from tests.support.server import APP, start_server, stop_server, wait_until_up
from tests.support.slicer import SlicerLogic
from tests.synthetic import write_case

pytestmark = pytest.mark.integration

TERMINAL = ("DONE", "ERROR", "STOPPED")


class Annotator:
    """3D Slicer's module logic on a server, and the files the test inspects."""

    def __init__(self, url: str, root: Path, model_dir: str) -> None:
        self.logic = SlicerLogic(url, str(root / "client"), "", "")
        self.model_dir = model_dir
        self.root = root

    def stats(self) -> dict[str, Any]:
        return self.logic.info()["train_stats"]["segmentation"]

    def progress(self) -> float:
        """The training progress bar, computed exactly as MONAILabel.py does (lines 491-498)."""
        stats = self.stats()
        current = 0 if stats.get("total_time") else stats.get("epoch", 1)
        return current / max(stats.get("total_epochs", 1), 1)

    def served(self) -> list[str]:
        """Digests of both served weight files."""
        paths = [n.published_path(self.model_dir) for n in (SEGMENTATION, CLICK_NETWORK)]
        return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]

    def wait_for_end(self) -> dict[str, Any]:
        return poll(lambda: (s := self.logic.train_status()) and s["status"] in TERMINAL and s, "the run to end")


@pytest.fixture(scope="module")
def annotator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Annotator]:
    """Three labelled synthetic cases; the click network may train up to 500 epochs a run."""
    root = tmp_path_factory.mktemp("run")
    studies, model_dir = str(root / "studies"), str(root / "model")
    cases = {f"case{i}": write_case(studies, f"case{i}", seed=i, label_folder=str(root / "truth")) for i in range(3)}
    os.makedirs(root / "client")
    conf = {**TINY, "model_dir": model_dir, "click_epochs": "500"}
    process, url = start_server(APP, studies, conf, str(root / "server.log"))
    try:
        wait_until_up(process, url)
        annotator = Annotator(url, root, model_dir)
        for name, case in cases.items():
            annotator.logic.save_label(name, case.label_path, params=LABEL_INFO)
        yield annotator
    finally:
        stop_server(process)


def test_max_epochs_1_trains_one_epoch_of_each_network_and_progress_only_moves_forward(annotator: Annotator) -> None:
    annotator.logic.train_start("segmentation", {"max_epochs": 1})
    seen = [annotator.progress()]
    poll(
        lambda: seen.append(annotator.progress()) or annotator.logic.train_status()["status"] in TERMINAL,
        "the run to end",
        every_s=0.1,
    )
    stats = annotator.stats()
    assert stats["status"] == "DONE", stats
    assert (stats["epoch"], stats["total_epochs"]) == (2, 2)
    assert {name: n["epoch"] for name, n in stats["networks"].items()} == {"segmentation": 1, "click_network": 1}
    assert stats["best_metric"] == pytest.approx(stats["networks"]["segmentation"]["best_metric"] or 0.0)
    running = seen[: next((i for i, p in enumerate(seen) if p == 0 and i and seen[i - 1] == 1.0), len(seen))]
    assert running == sorted(running), seen  # only forward while running (0 after DONE, as the module shows)
    assert max(seen) <= 1.0
    assert all(os.path.isfile(n.published_path(annotator.model_dir)) for n in (SEGMENTATION, CLICK_NETWORK))


@pytest.mark.parametrize("phase", ["segmentation", "click_network"])
def test_stop_in_either_phase_leaves_both_served_weight_files_byte_identical(annotator: Annotator, phase: str) -> None:
    before = annotator.served()
    last_run = annotator.stats()["run_id"]
    # The segmentation network may use 2/3 of the budget, the click network the rest: 10 s for the click network
    # alone would end the run before Stop on a busy machine (an epoch then takes most of it), so it gets 30 s.
    minutes = {"segmentation": 0.5, "click_network": 1.5}[phase]
    annotator.logic.train_start("segmentation", {"max_epochs": 500, "train_minutes": minutes})
    poll(
        lambda: (
            (s := annotator.stats()).get("run_id") != last_run
            and s.get("networks", {}).get(phase, {}).get("epoch", 0) >= 1
        ),
        f"the {phase} network to finish an epoch",
        every_s=0.2,
    )
    annotator.logic.train_stop()

    assert annotator.logic.train_status()["status"] == "STOPPED"
    stats = annotator.stats()
    assert stats["status"] == "STOPPED" and stats["run_id"] != last_run
    with open(os.path.join(annotator.model_dir, "train_stats.json")) as f:
        assert '"status": "STOPPED"' in f.read()  # no stats file says RUNNING when no run is running
    assert annotator.served() == before
    assert not list(Path(annotator.model_dir).glob(".*.tmp"))


def test_a_second_train_request_waits_replacing_the_pending_one_and_stop_drops_it(annotator: Annotator) -> None:
    first = annotator.logic.train_start("segmentation", {"max_epochs": 500, "train_minutes": 0.3})
    assert first["status"] in ("SUBMITTED", "RUNNING")
    second = annotator.logic.train_start("segmentation", {"max_epochs": 1})
    third = annotator.logic.train_start("segmentation", {"max_epochs": 2})
    assert second["status"] == third["status"] == "PENDING" and second["id"] != third["id"]
    status = annotator.logic.train_status()  # what every annotator sees: the run, and the request waiting behind it
    assert status["id"] == first["id"] and status["pending"]["id"] == third["id"]

    # The running run ends; the pending request (the third, which replaced the second) runs next.
    poll(lambda: annotator.logic.train_status()["request"].get("max_epochs") == 2, "the pending run to start")
    assert annotator.wait_for_end()["status"] == "DONE"
    assert annotator.stats()["networks"]["segmentation"]["epoch"] == 2

    # Stop while a run is going and one is pending: both end, nothing starts afterwards.
    before = annotator.served()
    started = annotator.logic.train_start("segmentation", {"max_epochs": 500})
    pending = annotator.logic.train_start("segmentation", {"max_epochs": 1})
    assert pending["status"] == "PENDING"
    stopped = annotator.logic.train_stop()
    assert stopped["id"] == started["id"] and stopped["status"] == "STOPPED"
    status = annotator.logic.train_status()
    assert status["id"] == started["id"] and status["status"] == "STOPPED" and "pending" not in status
    assert annotator.served() == before
    # Stop with nothing running answers without error and starts nothing.
    assert annotator.logic.train_stop() in ({}, None)
    assert annotator.logic.train_status()["id"] == started["id"]


# What stock MONAI Label's batch endpoint documents as its default options (and GPU-only: multi_gpu on cuda).
BATCH_DEFAULTS = {
    "device": "cuda",
    "multi_gpu": True,
    "gpus": "all",
    "logging": "WARNING",
    "save_label": True,
    "label_tag": "original",
    "max_workers": 1,
    "max_batch_size": 0,
}


def test_batch_inference_with_the_default_options_pre_segments_every_image_on_cpu(annotator: Annotator) -> None:
    url = annotator.logic.url
    refused = requests.post(f"{url}/batch/infer/segmentation", json={"label_tag": "final"}, timeout=30)
    assert refused.status_code == 422 and "'original' labels" in refused.json()["detail"]
    reply = requests.post(f"{url}/batch/infer/segmentation?images=all", json=BATCH_DEFAULTS, timeout=30)
    assert reply.status_code == 200, reply.text

    status = poll(
        lambda: (s := requests.get(f"{url}/batch/infer", timeout=30).json()) and s["status"] in TERMINAL and s,
        "the batch job to end",
    )
    assert status["status"] == "DONE", status
    objects = requests.get(f"{url}/datastore/?output=all", timeout=30).json()["objects"]
    assert len(objects) == 3
    for case, entry in objects.items():
        assert "original" in entry["labels"] and "final" in entry["labels"], case  # finals untouched
        label = requests.get(f"{url}/datastore/label", params={"label": case, "tag": "original"}, timeout=30)
        assert label.status_code == 200 and len(label.content) > 100


def test_tumor_evaluate_segments_every_labelled_case_through_the_server(annotator: Annotator) -> None:
    out = annotator.root / "evaluation"
    studies = annotator.root / "studies"
    assert main(["--server", annotator.logic.url, "--studies", str(studies), "--out", str(out)]) == 0

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"] and {r["label"] for r in rows} == {"tumor"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 and float(r["volume_ml_true"]) > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["predictions"] == f"{annotator.logic.url} (segmentation)"
    assert summary["labels"]["tumor"]["dice"]["n"] == 3
