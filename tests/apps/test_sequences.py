"""Multi-sequence MRI through the real server: one image per case, Slicer gets the first sequence, models get all."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from scipy import ndimage

from tests.apps.conftest import TINY
from tests.apps.test_interactive import result, scribble_file
from tests.apps.test_server import assert_same_grid, error_of, train
from tests.support.annotator import deepest_point, dice, scribbles
from tests.support.server import APP, start_server, stop_server, wait_until_up
from tests.support.slicer import LABEL_INFO, SLICER
from tests.synthetic import write_sequences

pytestmark = pytest.mark.integration

NAMES = ("t2f", "t1c", "t1n", "t2w")
SEQUENCES = {"sequences": ",".join(NAMES), "modality": "mr"}
BRATS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "brats_unlabeled")


def test_multi_sequence_cases_through_the_whole_loop(tmp_path) -> None:
    studies = str(tmp_path / "studies")
    final = os.path.join(studies, "labels", "final")
    cases = {  # three namings, one case with a sequence on a coarser grid
        "BraTS-GLI-00001-000": write_sequences(studies, "BraTS-GLI-00001-000", 1, NAMES, "-", ("t1n",), final),
        "BraTS2021_00002": write_sequences(studies, "BraTS2021_00002", 2, NAMES, "_", label_folder=final),
        "case3": write_sequences(studies, "case3", 3, NAMES, "/", label_folder=str(tmp_path / "truth")),
    }
    process, url = start_server(
        APP, studies, {**TINY, **SEQUENCES, "model_dir": str(tmp_path / "model")}, str(tmp_path / "server.log")
    )
    try:
        wait_until_up(process, url)
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        datastore = client.info()["datastore"]
        assert (datastore["total"], datastore["completed"]) == (3, 2)
        assert client.next_sample("random", {})["id"] == "case3"

        # Slicer downloads the first sequence, the one annotators read and label.
        download = requests.get(f"{url}/datastore/image?image=case3", timeout=30)
        with open(cases["case3"].image_path, "rb") as f:
            assert download.content == f.read()

        status = train(client, {"max_epochs": 1})
        assert status["status"] == "DONE", open(tmp_path / "server.log").read()[-3000:]
        path, _ = client.infer("segmentation", "case3", {"result_extension": ".nrrd"})
        assert_same_grid(sitk.ReadImage(path), cases["case3"].image_path)

        # Scribbles read all four sequences and answer on the first sequence's grid.
        truth = cases["case3"].label.astype(bool)
        fg, bg = scribbles(truth)
        values = np.zeros(truth.shape, np.uint8)
        values[bg], values[fg] = 2, 3
        label = scribble_file(None, "case3", values, str(tmp_path / "s.nii.gz"), like=cases["case3"].image_path)
        params = {**SLICER, "label_info": LABEL_INFO, "selected_label_name": "tumor", "roi": []}
        path, _ = client.infer("scribbles", "case3", params, label_in=label)
        mask, image = result(path)
        assert_same_grid(image, cases["case3"].image_path)
        assert dice(mask, truth) > 0.8

        # A case that lacks a sequence is refused naming it; so is one sequence uploaded alone.
        os.remove(os.path.join(studies, "case3", "t1c.nii.gz"))
        message = error_of(lambda: client.infer("segmentation", "case3", {}))
        assert "Status: 422" in message and "case case3 lacks sequence(s) t1c" in message
        message = error_of(lambda: client.upload_image(cases["BraTS2021_00002"].image_path, "single"))
        assert "Status: 422" in message and "takes the sequences t2f, t1c, t1n, t2w as 4 channels" in message
    finally:
        stop_server(process)


@pytest.mark.skipif(not os.path.isdir(BRATS), reason="needs ../shared/data/brats_unlabeled (real BraTS sequences)")
@pytest.mark.parametrize("layout", ["-", "_", "/"])
def test_real_brats_sequences_in_each_naming(tmp_path, layout: str) -> None:
    studies = tmp_path / "studies"
    case = "BraTS-GLI-00001-000" if layout == "-" else "BraTS2021_00001" if layout == "_" else "patient1"
    for name in NAMES:
        target = studies / f"{case}{layout}{name}.nii.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(BRATS, f"BraTS-GLI-00001-000-{name}.nii.gz"), target)
    process, url = start_server(
        APP, str(studies), {**TINY, **SEQUENCES, "model_dir": str(tmp_path / "model")}, str(tmp_path / "server.log")
    )
    try:
        wait_until_up(process, url)
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        assert client.info()["datastore"]["total"] == 1
        assert client.next_sample("random", {})["id"] == case
        first = studies / f"{case}{layout}t2f.nii.gz"
        assert requests.get(f"{url}/datastore/image?image={case}", timeout=60).content == first.read_bytes()
        # Clicks on the FLAIR-bright lesion: the zero-training clicks model segments on all four sequences.
        flair = np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(first))), (2, 1, 0))
        bright = flair > np.percentile(flair[flair > 0], 99)
        point = deepest_point(bright, (1.0, 1.0, 1.0))
        path, _ = client.infer("clicks", case, {**SLICER, "label": "tumor", "foreground": [list(point)]})
        mask, image = result(path)
        assert_same_grid(image, str(first))
        assert mask[point] == 1 and 100 < mask.sum() < 0.05 * mask.size
    finally:
        stop_server(process)


def test_sub_region_labels_through_the_loop(tmp_path) -> None:
    """--conf labels necrosis,edema on four sequences: submit by segment name, train, segment both."""
    studies = str(tmp_path / "studies")
    cases = {
        f"case{i}": write_sequences(studies, f"case{i}", i, NAMES, "-", label_folder=str(tmp_path / "t"))
        for i in range(3)
    }
    conf = {**TINY, **SEQUENCES, "labels": "necrosis,edema", "model_dir": str(tmp_path / "model")}
    process, url = start_server(APP, studies, conf, str(tmp_path / "server.log"))
    try:
        wait_until_up(process, url)
        client = MONAILabelClient(url, tmpdir=str(tmp_path))
        for name in ("case0", "case1"):  # the tumour's core as necrosis, the rest as edema, exported by Slicer
            truth = cases[name].label.astype(bool)  # segments in Slicer's order: edema first, value 1
            core = ndimage.binary_erosion(truth, iterations=2)
            values = np.where(core, 2, np.where(truth, 1, 0)).astype(np.uint8)
            path = scribble_file(None, name, values, str(tmp_path / f"{name}.nii.gz"), like=cases[name].image_path)
            client.save_label(
                name, path, params={"label_info": [{"name": "edema", "idx": 1}, {"name": "necrosis", "idx": 2}]}
            )
        stored = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(studies, "labels", "final", "case0.nii.gz")))
        assert set(np.unique(stored)) == {0, 1, 2} and (stored == 1).sum() < (stored == 2).sum()  # necrosis = 1
        assert train(client, {"max_epochs": 1})["status"] == "DONE"
        path, params = client.infer("segmentation", "case2", {"result_extension": ".nrrd"})
        assert params["label_names"] == {"necrosis": 1, "edema": 2}
        assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(path)))) <= {0, 1, 2}
    finally:
        stop_server(process)
