"""The cases of a batch pre-segmentation: where each image comes from and where its label goes.

A source lists its cases lazily (a folder through ``os.scandir``, a PACS page by page over QIDO-RS), so listing an
archive holds one page of names in memory, never its images. Each case is a small picklable :class:`CaseTask`
that a worker process, on this machine or on a Dask cluster, can segment on its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom import Dataset

from lib.datastore.tumor_datastore import case_files, split_case_file
from lib.transforms.formats import volume_suffix_of

LABEL_SUFFIX = ".nii.gz"
PAGE = 100  # series per QIDO-RS request
USERNAME_ENV, PASSWORD_ENV = "MONAI_LABEL_DICOMWEB_USERNAME", "MONAI_LABEL_DICOMWEB_PASSWORD"  # as the server's


@dataclass(frozen=True)
class CaseTask:
    """One image to segment.

    Attributes:
        case: the case's name in the journal: an image file name, or a DICOM series instance UID.
        image: the image file (folder input), or None.
        output: the label file to write (folder input), or None.
        pacs: the DICOMweb URL the series is read from and its DICOM SEG stored to (PACS input), or None.
        study: the series' study instance UID (PACS input).
    """

    case: str
    image: str | None = None
    output: str | None = None
    pacs: str | None = None
    study: str | None = None


def is_pacs(location: str) -> bool:
    """Whether ``--input`` names a DICOMweb service rather than a folder."""
    return location.startswith(("http://", "https://"))


def dicomweb_client(url: str) -> DICOMwebClient:
    """A DICOMweb client of ``url``, with the user and password the server's settings use, when set."""
    user, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    session = create_session_from_user_pass(user, password) if user and password else None
    return DICOMwebClient(url=url, session=session)


def _folder_tasks(folder: str, output: str, sequences: Sequence[str] = ()) -> Iterator[CaseTask]:
    if not os.path.isdir(folder):
        raise ValueError(f"--input {folder!r} is neither a folder nor a DICOMweb URL (http://...)")
    if sequences:  # one task per case, whose image is its first sequence, as the server lists a studies folder
        with os.scandir(folder) as entries:
            files = [e.name for e in entries if volume_suffix_of(e.name) is not None and e.is_file()]
        for name in case_files(folder, files, sequences):
            case, _ = split_case_file(name, sequences) or (name, "")
            yield CaseTask(name, image=os.path.join(folder, name), output=os.path.join(output, case + LABEL_SUFFIX))
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            suffix = volume_suffix_of(entry.name)
            if suffix is not None and entry.is_file():
                label = os.path.join(output, entry.name[: -len(suffix)] + LABEL_SUFFIX)
                yield CaseTask(entry.name, image=entry.path, output=label)


def folder_cases(folder: str, output: str, sequences: Sequence[str] = ()) -> Iterator[CaseTask]:
    """Every case of ``folder`` whose label is not yet in ``output`` (finished cases are skipped): each volume file
    directly in it, or with ``sequences`` each case as the server lists a multi-sequence studies folder (flat
    ``<case>-<seq>`` files, ``<case>/<seq>`` folders, stacked files), labelled ``<case>.nii.gz``."""
    return (task for task in _folder_tasks(folder, output, sequences) if not os.path.exists(str(task.output)))


def count_folder_cases(folder: str, output: str, sequences: Sequence[str] = ()) -> tuple[int, int]:
    """How many cases ``folder`` holds, and how many of them have their label already (names only)."""
    total = finished = 0
    for task in _folder_tasks(folder, output, sequences):
        total += 1
        finished += os.path.exists(str(task.output))
    return total, finished


def pacs_cases(url: str, modality: str, finished: set[str]) -> Iterator[CaseTask]:
    """Every ``modality`` series of the PACS at ``url`` not in ``finished``, one QIDO-RS page at a time."""
    client = dicomweb_client(url)
    offset = 0
    while True:
        page = client.search_for_series(
            search_filters={"Modality": modality.upper()}, offset=offset, limit=PAGE, get_remaining=False
        )
        for item in page:
            series = Dataset.from_json(item)
            uid = str(series.SeriesInstanceUID)
            if uid not in finished:
                yield CaseTask(uid, pacs=url, study=str(series.StudyInstanceUID))
        if len(page) < PAGE:
            return
        offset += len(page)
