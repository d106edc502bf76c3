"""tumor-segment on a real PACS (Orthanc, DICOMweb): each CT series gets a DICOM SEG stored back, once."""

from __future__ import annotations

import os

import pytest
import requests
from pydicom import Dataset

from lib.segment.cli import JOURNAL, read_journal, run_batch
from lib.segment.work import DONE
from tests.support.orthanc import MISSING, series_uids, start_orthanc, stop_orthanc, upload

SERIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "sts_dicom", "STS_001")

pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=str(MISSING)),
    pytest.mark.skipif(not os.path.isdir(SERIES), reason="needs ../shared/data/sts_dicom (a real CT series)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def test_every_ct_series_gets_one_dicom_seg_and_a_second_run_skips_it(tmp_path) -> None:
    orthanc, pacs = start_orthanc(str(tmp_path / "orthanc"))
    try:
        assert upload(pacs, SERIES) == 60  # 59 CT slices and an RTSTRUCT, which is not a CT series
        (ct,) = series_uids(pacs, "CT")
        conf = {"device": "cpu", "model_dir": str(tmp_path / "model")}  # the shipped CT model

        counts = run_batch(f"{pacs}/dicom-web", str(tmp_path / "out"), conf)

        assert counts == {"done": 1, "empty": 0, "failed": 0}
        assert read_journal(str(tmp_path / "out" / JOURNAL)) == {ct: DONE}
        (seg,) = series_uids(pacs, "SEG")
        study = requests.get(f"{pacs}/series", params={"expand": ""}, timeout=30).json()
        study_uid = next(s for s in study if s["MainDicomTags"]["SeriesInstanceUID"] == seg)["ParentStudy"]
        study_uid = requests.get(f"{pacs}/studies/{study_uid}", timeout=30).json()["MainDicomTags"]["StudyInstanceUID"]
        meta = requests.get(f"{pacs}/dicom-web/studies/{study_uid}/series/{seg}/metadata", timeout=30).json()[0]
        meta = Dataset.from_json(meta)
        assert str(meta.ReferencedSeriesSequence[0].SeriesInstanceUID) == ct  # on the CT series it segmented
        assert [str(s.SegmentLabel) for s in meta.SegmentSequence] == ["tumor"]

        again = run_batch(f"{pacs}/dicom-web", str(tmp_path / "out"), conf)
        assert again == {"done": 0, "empty": 0, "failed": 0} and series_uids(pacs, "SEG") == [seg]
    finally:
        stop_orthanc(orthanc)
