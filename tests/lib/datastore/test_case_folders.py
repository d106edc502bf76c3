"""Which changes of a multi-sequence studies folder the case-folder watcher passes on."""

from __future__ import annotations

import pytest
from watchdog.events import DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileCreatedEvent, FileMovedEvent

from lib.datastore.case_folders import CaseFolderEvents


@pytest.mark.parametrize(
    ("event", "seen"),
    [
        (DirCreatedEvent("/s/case1"), True),
        (DirDeletedEvent("/s/case1"), True),
        (DirMovedEvent("/s/case1", "/s/case2"), True),
        (DirMovedEvent("/elsewhere/case1", "/s/case1"), True),
        (FileCreatedEvent("/s/case1/t1c.nii.gz"), True),
        (FileMovedEvent("/s/case1/.t1c.nii.gz.part", "/s/case1/t1c.NII.GZ"), True),
        # MONAI Label's watcher sees the folder's own files; the rest would only refresh again and again.
        (FileCreatedEvent("/s/case1"), True),  # a link to a case folder is reported as a file
        (FileCreatedEvent("/s/case1-t2f.nii.gz"), False),
        (FileMovedEvent("/s/.datastore_v2.json.x1.tmp", "/s/datastore_v2.json"), False),  # the datastore's own
        (DirCreatedEvent("/s/.replaced"), False),
        (FileCreatedEvent("/s/.replaced/20261202_case.nii.gz"), False),
        (FileCreatedEvent("/s/labels/final.nii.gz"), False),
        (DirCreatedEvent("/s/labels/final"), False),
        (FileCreatedEvent("/s/case1/notes.txt"), False),
        (FileCreatedEvent("/s/case1/.t1c.nii.gz.part"), False),
        (FileCreatedEvent("/s/case1/sub/t1c.nii.gz"), False),
        (FileCreatedEvent("/s/.datastore_v2.json.x1.tmp"), False),
    ],
)
def test_case_folder_changes_refresh_and_nothing_else_does(event, seen: bool) -> None:
    calls = []
    CaseFolderEvents("/s", calls.append, ("labels", "datastore_v2.json")).dispatch(event)
    assert calls == ([event] if seen else [])
