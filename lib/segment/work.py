"""Segment one case of a batch with the server's own auto segmentation: the same pipeline, the same weights.

Runs in whichever process segments the case (this one, or a Dask worker); the network is loaded once per process
and kept. A label file appears under its final name only when complete, so an interrupted batch never leaves a
half-written label that a resumed batch would take as finished.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monailabel.datastore.utils.convert import dicom_to_nifti, nifti_to_dicom_seg
from monailabel.datastore.utils.dicom import dicom_web_download_series, dicom_web_upload_dcm

from lib.config import APP_DIR, parse_config
from lib.infers import SegmentationInfer
from lib.segment.cases import LABEL_SUFFIX, CaseTask, dicomweb_client
from lib.transforms.volume_io import read_volume

SEG_WRITER = "itkimage2segimage"
DONE, EMPTY, FAILED = "done", "empty", "failed"  # EMPTY: segmented, no tumour found (no DICOM SEG is stored)


@dataclass(frozen=True)
class Outcome:
    """What became of one case (a line of the batch's journal)."""

    case: str
    status: str
    seconds: float
    voxels: int = 0  # labelled voxels of the result
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


Conf = tuple[tuple[str, str], ...]  # the --conf pairs, hashable


@functools.lru_cache(maxsize=2)
def segmenter(conf: Conf, threads: int | None = None) -> SegmentationInfer:
    """The app's auto segmentation under ``conf`` (the server's ``--conf``), built once per process."""
    if threads:
        torch.set_num_threads(threads)
    return SegmentationInfer(parse_config(dict(conf), APP_DIR))


def segment(task: CaseTask, conf: Conf, threads: int | None = None) -> Outcome:
    """Segment ``task``; a failure is returned (named in the outcome), not raised, so the batch goes on."""
    start = time.perf_counter()
    try:
        infer = segmenter(conf, threads)
        voxels = _series(infer, task) if task.pacs else _file(infer, task)
    except Exception as e:  # noqa: BLE001 - one unreadable case must not end an archive's batch
        return Outcome(task.case, FAILED, time.perf_counter() - start, error=f"{type(e).__name__}: {e}")
    return Outcome(task.case, DONE if voxels else EMPTY, time.perf_counter() - start, voxels)


def _labelled_voxels(path: str) -> int:
    label, _ = read_volume(path)
    return int(np.count_nonzero(label))


def _file(infer: SegmentationInfer, task: CaseTask) -> int:
    assert task.image and task.output
    result, _ = infer({"image": task.image, "result_extension": LABEL_SUFFIX})
    try:
        voxels = _labelled_voxels(result)
        os.makedirs(os.path.dirname(os.path.abspath(task.output)), exist_ok=True)
        partial = f"{task.output}.partial{LABEL_SUFFIX}"
        shutil.copyfile(result, partial)
        os.replace(partial, task.output)  # complete, or absent
    finally:
        os.remove(result)
    return voxels


def _find_seg_writer() -> None:
    """Put dcmqi's ``itkimage2segimage`` (MONAI Label's DICOM SEG writer, installed with this interpreter by the
    ``dcmqi`` package) on ``PATH`` when the command was started without the environment's ``bin`` on it."""
    if shutil.which(SEG_WRITER) is None:
        here = os.path.dirname(sys.executable)
        if not os.path.isfile(os.path.join(here, SEG_WRITER)):
            raise FileNotFoundError(f"{SEG_WRITER} (package dcmqi) is not installed: no DICOM SEG can be written")
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def _series(infer: SegmentationInfer, task: CaseTask) -> int:
    """Download the series, segment it, and store the result back as a DICOM SEG on the series."""
    assert task.pacs
    _find_seg_writer()
    client = dicomweb_client(task.pacs)
    with tempfile.TemporaryDirectory(prefix="tumor-segment-") as folder:
        series = os.path.join(folder, "series")
        dicom_web_download_series(task.study, task.case, series, client)
        image = dicom_to_nifti(series)
        try:
            result, _ = infer({"image": image, "result_extension": LABEL_SUFFIX})
        finally:
            os.remove(image)
        try:
            voxels = _labelled_voxels(result)
            if voxels:
                values = infer.app_config.plan.label_values
                seg = nifti_to_dicom_seg(series, result, [{"name": n, "idx": v} for n, v in values.items()])
                dicom_web_upload_dcm(seg, client)
                os.remove(seg)
        finally:
            os.remove(result)
    return voxels
