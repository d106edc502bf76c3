"""The whole annotation loop through the real server, over the same HTTP protocol as 3D Slicer's module."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from monailabel.client.client import MONAILabelClientException

from tests.apps.conftest import TINY, Server, failed_startup
from tests.synthetic import write_case

pytestmark = pytest.mark.integration

TERMINAL = ("DONE", "ERROR", "STOPPED")
LABEL_INFO = {"label_info": [{"name": "tumor", "idx": 1}]}


def poll(condition, what: str, deadline_s: float = 300, every_s: float = 1.0) -> Any:
    """Return ``condition()`` once truthy; fail after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every_s)
    pytest.fail(f"timed out after {deadline_s} s waiting for {what}")


def train(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Start a training run with ``client`` (MONAI Label's or 3D Slicer's) and wait for it to end; returns the
    final task status."""
    started = client.train_start("segmentation", params)
    return poll(
        lambda: (s := client.train_status()) and s.get("id") == started["id"] and s["status"] in TERMINAL and s,
        "training to end",
    )


def objects(server: Server) -> dict[str, Any]:
    return server.client.datastore()["objects"]


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read(path: str) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(path)
    return sitk.GetArrayFromImage(image), image


def assert_same_grid(result: sitk.Image, reference_path: str) -> None:
    reference = sitk.ReadImage(reference_path)
    assert result.GetSize() == reference.GetSize()
    np.testing.assert_allclose(result.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(result.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(result.GetDirection(), reference.GetDirection(), atol=1e-6)


def error_of(call) -> str:
    with pytest.raises(MONAILabelClientException) as raised:
        call()
    return str(raised.value.msg)


def test_info_has_what_slicer_needs(server: Server) -> None:
    info = server.client.info()
    assert "config" not in info
    assert info["labels"] == ["tumor"]
    assert "deepedit" not in info["models"]  # learned clicks are advertised once trained
    assert info["models"]["segmentation"]["type"] == "segmentation"
    assert info["models"]["segmentation"]["labels"] == {"tumor": 1}
    assert info["models"]["segmentation"]["description"] == "Tumour auto segmentation (CT, tumor)"
    trainer = info["trainers"]["segmentation"]
    assert "auto segmentation, then learned clicks" in trainer["description"]
    # The options table: what an annotator may change, and the server's fixed values, which they may send back.
    assert set(trainer["config"]) == {
        "max_epochs",
        "train_minutes",
        "val_split",
        "learning_rate",
        "finetune_learning_rate",
        "device",
        "multi_gpu",
        "tracking",
    }
    assert (trainer["config"]["device"], trainer["config"]["multi_gpu"]) == (["cpu"], False)
    assert info["models"]["segmentation"]["config"]["keep_largest"] == ["auto", "on", "off"]  # a combo box
    assert list(info["trainers"]) == ["segmentation"]
    assert info["trainers"]["segmentation"]["config"]["tracking"][0] == "None"  # mlflow only when opted in
    assert set(info["strategies"]) == {"epistemic", "random", "first"}
    assert info["datastore"]["total"] == 4


def test_bad_requests_are_refused_and_change_nothing(server: Server, tmp_path) -> None:
    before = objects(server)
    files_before = sorted(os.listdir(server.studies))
    case = next(iter(server.cases))

    assert "Status: 404" in error_of(lambda: server.client.infer("nnunet", case, {}))
    assert "Status: 404" in error_of(lambda: server.client.infer("segmentation", "no_such_image", {}))
    assert "Status: 404" in error_of(lambda: server.client.next_sample("uncertainty", {}))

    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(os.urandom(4096))
    message = error_of(lambda: server.client.upload_image(str(corrupt), "corrupt"))
    assert "Status: 422" in message and "cannot read" in message

    wrong_shape = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    sitk.WriteImage(wrong_shape, str(tmp_path / "wrong_shape.nii.gz"))
    message = error_of(lambda: server.client.save_label(case, str(tmp_path / "wrong_shape.nii.gz"), params=LABEL_INFO))
    assert "Status: 422" in message and "size" in message

    label = sitk.ReadImage(server.cases[case].label_path) * 3  # value 3 in a one-label app
    sitk.WriteImage(label, str(tmp_path / "three.nii.gz"))
    message = error_of(lambda: server.client.save_label(case, str(tmp_path / "three.nii.gz")))
    assert "Status: 422" in message and "0 (background) to 1" in message

    assert objects(server) == before
    assert sorted(os.listdir(server.studies)) == files_before
    assert os.listdir(os.path.join(server.studies, "labels", "final")) == []


def test_annotation_loop(server: Server) -> None:
    client = server.client
    published = os.path.join(server.model_dir, "segmentation.pt")

    # Next sample, then the honest refusal before any training.
    sample = client.next_sample("random", {})
    assert sample["id"] in server.cases
    message = error_of(lambda: client.infer("segmentation", sample["id"], {}))
    assert "Status: 409" in message and "Train" in message
    message = error_of(lambda: client.train_start("segmentation", {"max_epochs": 1}))  # nothing to train on yet
    assert "Status: 409" in message and "no labelled images yet" in message

    # The annotator submits two corrected labels (3D Slicer sends label_info with segment names).
    labelled = ["case0", "case1"]
    for case in labelled:
        client.save_label(case, server.cases[case].label_path, params=LABEL_INFO)
    assert client.info()["datastore"]["completed"] == 2

    # Train reaches DONE, publishes weights, and reports progress as the module reads it.
    status = train(server.client, {"max_epochs": 2})
    assert status["status"] == "DONE", server.log()
    run = client.info()["train_stats"]["segmentation"]
    stats = run["networks"]["segmentation"]
    # Both networks trained in the run (2 epochs each: click_epochs is 2), and the bar counts both.
    assert (run["epoch"], run["total_epochs"]) == (4, 4) and "total_time" in run
    assert stats["cases"] == {"train": 1, "val": 1} and set(stats["dice_per_label"]) == {"tumor"}
    # The run trained in its own process at a lower CPU priority than the server (which has the test's).
    assert run["pid"] != server.process.pid
    assert run["niceness"] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    assert os.path.isfile(published)

    # Inference now works, on exactly the input grid, with the new weights.
    unlabelled = [c for c in server.cases if c not in labelled]
    result_path, params = client.infer("segmentation", unlabelled[0], {"result_extension": ".nrrd"})
    array, result = read(result_path)
    assert_same_grid(result, server.cases[unlabelled[0]].image_path)
    assert set(np.unique(array)) <= {0, 1} and array.dtype == np.uint8
    assert params["label_names"] == {"tumor": 1}
    assert params["model"]["run_id"] == run["run_id"]
    assert params["keep_largest"] == stats["keep_largest"]  # post-processed as the run's validation decided
    assert set(stats["keep_largest"]) <= {"tumor"} and stats["val_dice_postprocessed"] >= stats["best_metric"]

    # The same run trained the click-guided network: the app now advertises it (type deepedit), with a
    # background label so that Slicer's DeepEdit panel can place background clicks.
    info = client.info()
    assert info["models"]["deepedit"]["type"] == "deepedit" and info["labels"] == ["tumor", "background"]
    assert os.path.isfile(os.path.join(server.model_dir, "click_network.pt"))
    clicks = info["train_stats"]["segmentation"]["networks"]["click_network"]
    assert clicks["epoch"] == clicks["total_epochs"] == 2 and set(clicks["dice_per_label"]) == {"clicked object"}
    image = server.cases[unlabelled[0]]
    inside = [int(v) for v in np.argwhere(image.label > 0).mean(axis=0).round()]
    slicer_params = {"tumor": [inside], "background": [[0, 0, 0]], "label": "tumor", "result_extension": ".nrrd"}
    result_path, params = client.infer("deepedit", unlabelled[0], slicer_params)
    array, result = read(result_path)
    assert_same_grid(result, image.image_path)
    assert set(np.unique(array)) <= {0, 1} and params["label_names"] == {"tumor": 1}
    message = error_of(lambda: client.infer("deepedit", unlabelled[0], {"tumor": [[999, 0, 0]], "label": "tumor"}))
    assert "Status: 422" in message and "lies outside the image" in message

    # Training with MLflow opted in (sqlite store: MLflow 3 refuses its file store) also ends DONE.
    status = train(server.client, {"max_epochs": 1, "tracking": "mlflow"})
    assert status["status"] == "DONE", server.log()
    assert os.path.isfile(os.path.join(server.model_dir, "mlflow.db"))
    run_id = client.info()["train_stats"]["segmentation"]["run_id"]
    result_path, params = client.infer("segmentation", unlabelled[0], {})
    assert params["model"]["run_id"] == run_id != run["run_id"]  # picked up without a restart
    served, _ = read(result_path)

    # Epistemic scoring runs in the background after training; Next Sample then picks the most uncertain image.
    def scores() -> dict[str, float] | None:
        infos = {c: objects(server)[c]["image"]["info"] for c in unlabelled}
        published_ts = os.stat(published).st_mtime_ns
        done = all(i.get("epistemic_ts") == published_ts for i in infos.values())
        return {c: i["epistemic_entropy"] for c, i in infos.items()} if done else None

    uncertainty = poll(scores, "epistemic scores of the unlabelled images")
    assert all(np.isfinite(v) and v >= 0 for v in uncertainty.values())
    with open(server.log_path, errors="replace") as f:  # the annotator's requests come first
        assert "Background jobs start at niceness +10" in f.read()
    sample = client.next_sample("epistemic", {})
    assert sample["id"] == max(uncertainty, key=uncertainty.get)

    # A run stopped midway (as Auto-Update does) leaves the previous model serving, intact.
    before = sha256(published)
    started = client.train_start("segmentation", {"max_epochs": 500})
    poll(
        lambda: (s := client.info()["train_stats"]["segmentation"]).get("run_id") != run_id and s.get("epoch", 0) >= 1,
        "the long run to finish an epoch",
    )
    stopped = client.train_stop()
    assert stopped["id"] == started["id"] and stopped["status"] == "STOPPED"
    assert client.train_status()["status"] == "STOPPED"
    assert client.info()["train_stats"]["segmentation"]["status"] == "STOPPED"
    assert sha256(published) == before
    assert not [f for f in os.listdir(server.model_dir) if f.endswith(".tmp")]
    result_path, params = client.infer("segmentation", unlabelled[0], {})
    assert params["model"]["run_id"] == run_id
    np.testing.assert_array_equal(read(result_path)[0], served)

    # Once every image is labelled, Next Sample answers with no id. The image that was pre-segmented is compared
    # with what the annotator submitted (here the truth), per model version; the other was never served.
    assert client.info()["corrections"] == {}
    replies = [client.save_label(case, server.cases[case].label_path, params=LABEL_INFO) for case in unlabelled]
    changed = replies[0]["changed"]
    truth, served = server.cases[unlabelled[0]].label > 0, np.transpose(served, (2, 1, 0)) > 0
    assert changed["version"] == run_id and changed["voxels_changed"] == int((truth != served).sum())
    assert changed["dice"] == pytest.approx(2 * (truth & served).sum() / (truth.sum() + served.sum()))
    assert "changed" not in replies[1]
    assert client.info()["corrections"] == {
        run_id: {
            "labels": 1,
            "mean_dice": pytest.approx(changed["dice"]),
            "mean_voxels_changed": changed["voxels_changed"],
        }
    }
    assert not client.next_sample("random", {}).get("id")


def test_bad_configuration_stops_startup(tmp_path) -> None:
    status, log = failed_startup(str(tmp_path / "studies"), {**TINY, "modality": "pet"}, str(tmp_path / "log"))
    assert status != 0
    assert "The server cannot start: --conf modality 'pet' is not accepted: expected one of ct, mr" in log
    assert "Traceback" not in log  # the message alone, not uvicorn's 60 lines of frames


def test_a_second_server_on_the_same_folders_stops_at_startup(server: Server, tmp_path) -> None:
    """It would publish over the first's weights, settle its running training and share its Next Sample."""
    port = server.url.rsplit(":", 1)[1]
    others = str(tmp_path / "other-studies")
    write_case(others, "other0", seed=9)
    status, log = failed_startup(others, {**TINY, "model_dir": server.model_dir}, str(tmp_path / "model.log"))
    assert status != 0
    assert f"--conf model_dir {server.model_dir} is in use by another running server" in log
    assert f"port {port})" in log
    status, log = failed_startup(
        server.studies, {**TINY, "model_dir": str(tmp_path / "own-model")}, str(tmp_path / "studies.log")
    )
    assert status != 0
    assert f"The server cannot start: the studies folder {server.studies} is in use by another running server" in log
    assert f"port {port})" in log and "Traceback" not in log
    assert server.client.info()["name"]  # the first server serves on


def test_a_studies_image_cut_short_is_refused_for_inference_next_sample_and_labels(server: Server) -> None:
    """A copy into the studies folder that was cut short: ITK reads the missing voxels as zeros, the network would
    segment them."""
    source = server.cases[next(iter(server.cases))].image_path
    cut = os.path.join(server.studies, "a_cutshort.nii.gz")
    data = open(source, "rb").read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    try:
        poll(lambda: "a_cutshort" in objects(server), "the folder watcher to list the new file")
        # Next Sample does not send it: "first" picks it (first by name), finds it damaged and picks again.
        assert server.client.next_sample("first", {}).get("id") != "a_cutshort"
        assert "Next Sample skips image a_cutshort, damaged in the studies folder" in server.log()
        message = error_of(lambda: server.client.infer("segmentation", "a_cutshort", {}))
        assert "Status: 422" in message and "image refused" in message and "a_cutshort.nii.gz" in message
        label = server.cases[next(iter(server.cases))].label_path
        message = error_of(lambda: server.client.save_label("a_cutshort", label, params=LABEL_INFO))
        assert "Status: 422" in message and "damaged in the studies folder" in message
    finally:
        os.remove(cut)
