"""Images from a PACS: a real Orthanc over DICOMweb, with no internet."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from monailabel.client import MONAILabelClient

from tests.apps.conftest import failed_startup
from tests.apps.test_server import LABEL_INFO, error_of, train
from tests.support.orthanc import MISSING, series_uids, start_orthanc, stop_orthanc, upload
from tests.support.server import APP, start_server, stop_server, wait_until_up

pytestmark = pytest.mark.integration

pytestmark = [pytest.mark.integration, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

WRONG_NAME = {"label_info": [{"name": "mass", "idx": 1}]}
SERIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "sts_dicom", "STS_001")


@pytest.mark.skipif(not os.path.isdir(SERIES), reason="needs ../shared/data/sts_dicom (a real CT series)")
def test_server_starts_offline_on_a_pacs_and_segments_a_ct_series(tmp_path) -> None:
    orthanc, pacs = start_orthanc(str(tmp_path / "orthanc"))
    try:
        assert upload(pacs, SERIES) == 60  # 59 CT slices and the RTSTRUCT
        # The shipped CT model; one short training run.
        conf = {"device": "cpu", "model_dir": str(tmp_path / "model"), "click_epochs": "0", "train_minutes": "2"}
        process, url = start_server(APP, f"{pacs}/dicom-web", conf, str(tmp_path / "server.log"))
        try:
            # Up behind a dead proxy: MONAI Label would have downloaded its DICOM-SEG tool (dcmqi) at start-up and
            # failed; the pinned dcmqi package installs it.
            wait_until_up(process, url)
            client = MONAILabelClient(url, tmpdir=str(tmp_path))
            sample = client.next_sample("random", {})
            assert sample["id"]
            path, params = client.infer("segmentation", sample["id"], {"result_extension": ".nrrd"})
            result = sitk.ReadImage(path)
            assert result.GetSize()[2] == 59  # on the series' own grid
            assert np.count_nonzero(sitk.GetArrayFromImage(result)) > 1000 and params["label_names"] == {"tumor": 1}

            # A submit goes through the folder datastore's checks before anything reaches the PACS.
            message = error_of(lambda: client.save_label(sample["id"], path, params=WRONG_NAME))
            assert "Status: 422" in message and "segment 'mass' is not a label of this app" in message
            assert series_uids(pacs, "SEG") == []
            client.save_label(sample["id"], path, params=LABEL_INFO)
            assert len(series_uids(pacs, "SEG")) == 1  # stored in the PACS as DICOM SEG
            datastore = client.info()["datastore"]
            assert (datastore["total"], datastore["completed"]) == (1, 1)  # at once, so Train is enabled
            assert not client.next_sample("random", {}).get("id")  # the labelled series is not offered again
        finally:
            stop_server(process)

        # After a restart the counts still hold, and training runs on the series and its SEG from the PACS.
        process, url = start_server(APP, f"{pacs}/dicom-web", conf, str(tmp_path / "restart.log"))
        try:
            wait_until_up(process, url)
            client = MONAILabelClient(url, tmpdir=str(tmp_path))
            datastore = client.info()["datastore"]
            assert (datastore["total"], datastore["completed"]) == (1, 1)
            status = train(client, {"max_epochs": 1})
            assert status["status"] == "DONE", (tmp_path / "restart.log").read_text(errors="replace")[-3000:]
            assert client.info()["train_stats"]["segmentation"]["networks"]["segmentation"]["cases"] == {
                "train": 1,
                "val": 0,
            }
        finally:
            stop_server(process)
    finally:
        stop_orthanc(orthanc)


@pytest.mark.skipif(not os.path.isdir(SERIES), reason="needs ../shared/data/sts_dicom (a real CT series)")
def test_expert_rtstruct_in_the_pacs_is_a_label(tmp_path) -> None:
    """STS_001's RTSTRUCT (ROI GTV_Mass_CT) becomes its final label through --conf outline_names."""
    orthanc, pacs = start_orthanc(str(tmp_path / "orthanc"))
    try:
        upload(pacs, SERIES)
        conf = {"device": "cpu", "model_dir": str(tmp_path / "model"), "click_epochs": "0", "train_minutes": "2"}
        cache = str(tmp_path / "cache")
        env = {"MONAI_LABEL_DICOMWEB_CACHE_PATH": cache}
        for names, completed in (({}, 0), ({"outline_names": "GTV_Mass_CT=tumor"}, 1)):
            process, url = start_server(APP, f"{pacs}/dicom-web", {**conf, **names}, str(tmp_path / "log"), env=env)
            try:
                wait_until_up(process, url)
                client = MONAILabelClient(url, tmpdir=str(tmp_path))
                assert client.info()["datastore"]["completed"] == completed  # a ROI named otherwise is not used
                if not completed:
                    # A second server on the same PACS cache (its own model folder) would share the list, the
                    # labels and Next Sample: it stops at start-up.
                    own = {**conf, "model_dir": str(tmp_path / "model2")}
                    status, log = failed_startup(f"{pacs}/dicom-web", own, str(tmp_path / "second.log"), env=env)
                    assert status != 0 and "The server cannot start: the PACS cache folder" in log
                    port = url.rsplit(":", 1)[1]
                    assert "is in use by another running server (process " in log and f"port {port})" in log
                    continue
                uid = series_uids(pacs, "CT")[0]
                predicted, _ = client.infer("segmentation", uid, {})
                status = train(client, {"max_epochs": 1})
                assert status["status"] == "DONE", (tmp_path / "log").read_text(errors="replace")[-3000:]
            finally:
                stop_server(process)
        # The converted outline lies on the series' grid and agrees with the shipped model's segmentation.
        labels = [
            os.path.join(p, f) for p, _, fs in os.walk(cache) for f in fs if p.endswith(os.path.join("labels", "final"))
        ]
        assert len(labels) == 1
        outline = sitk.GetArrayFromImage(sitk.ReadImage(labels[0])) > 0
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(predicted)) > 0
        assert outline.shape == prediction.shape and outline.sum() > 1000
        assert 2 * (outline & prediction).sum() / (outline.sum() + prediction.sum()) > 0.6
    finally:
        stop_orthanc(orthanc)


@pytest.mark.skipif(not os.path.isdir(SERIES), reason="needs ../shared/data/sts_dicom (a real CT series)")
def test_expert_seg_in_the_pacs_counts_by_segment_name(tmp_path, monkeypatch) -> None:
    """A SEG whose segments are 'Mass' and 'Vessel': not a label until 'Mass' is mapped; then 'Mass' alone is."""
    from monailabel.datastore.utils.convert import dicom_to_nifti, nifti_to_dicom_seg

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])  # dcmqi
    series = tmp_path / "series"
    shutil.copytree(os.path.join(SERIES, "CT", "image"), series)
    image = sitk.ReadImage(dicom_to_nifti(str(series)))
    boxes = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)  # (K, J, I)
    boxes[20:30, 100:150, 100:150], boxes[30:34, 60:90, 60:90] = 1, 2
    label = sitk.GetImageFromArray(boxes)
    label.CopyInformation(image)
    sitk.WriteImage(label, str(tmp_path / "boxes.nii.gz"))
    seg = nifti_to_dicom_seg(str(series), str(tmp_path / "boxes.nii.gz"), [{"name": "Mass"}, {"name": "Vessel"}])

    orthanc, pacs = start_orthanc(str(tmp_path / "orthanc"))
    try:
        upload(pacs, os.path.join(SERIES, "CT", "image"))
        with open(seg, "rb") as f:
            requests.post(f"{pacs}/instances", data=f.read(), timeout=60).raise_for_status()
        cache = str(tmp_path / "cache")
        conf = {"device": "cpu", "model_dir": str(tmp_path / "model"), "click_epochs": "0", "train_minutes": "2"}
        for names, completed in (({}, 0), ({"outline_names": "Mass=tumor"}, 1)):
            log = str(tmp_path / "log")
            process, url = start_server(
                APP, f"{pacs}/dicom-web", {**conf, **names}, log, env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": cache}
            )
            try:
                wait_until_up(process, url)
                client = MONAILabelClient(url, tmpdir=str(tmp_path))
                assert client.info()["datastore"]["completed"] == completed
                if completed:
                    assert train(client, {"max_epochs": 1})["status"] == "DONE"
            finally:
                stop_server(process)
        cached = [
            os.path.join(p, f) for p, _, fs in os.walk(cache) for f in fs if p.endswith(os.path.join("labels", "final"))
        ]
        assert len(cached) == 1
        values = sitk.GetArrayFromImage(sitk.ReadImage(cached[0]))
        np.testing.assert_array_equal(values, (boxes == 1).astype(np.uint8))  # Mass as tumor; Vessel left out
    finally:
        stop_orthanc(orthanc)
