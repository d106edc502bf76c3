"""A labelled studies folder listed without writing into it.

MONAI Label's ``LocalDatastore`` writes into the folder it lists: its index (``datastore_v2.json``), a lock file and
``labels/original``. For a folder the server only trains from (the offline trainer's studies, ``replay_studies``)
that would fail on a read-only share, and race with a server that serves the same folder. So the datastore lists a
temporary mirror: links to the folder's images (and case sub-folders) and to its ``labels/final``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from monailabel.interfaces.datastore import DefaultLabelTag

from lib.config import AppConfig
from lib.datastore.tumor_datastore import LABELS_FOLDER, VOLUME_EXTENSIONS, TumorDatastore

DATASTORE_INDEX, LOCK_FILE = "datastore_v2.json", ".lock"  # what LocalDatastore writes beside the images


@contextmanager
def read_only_datastore(folder: str, app_config: AppConfig) -> Iterator[TumorDatastore]:
    """A datastore of ``folder``'s images and final labels that writes only into a temporary mirror, deleted on
    exit. Its paths lie in the mirror, under the same relative paths as in ``folder`` (:func:`in_folder`), and its
    file names, which name the cases, are the folder's."""
    folder = os.path.abspath(folder)
    with tempfile.TemporaryDirectory(prefix="studies-mirror-") as mirror:
        for entry in os.listdir(folder):
            if entry not in (LABELS_FOLDER, DATASTORE_INDEX, LOCK_FILE):  # the mirror's datastore writes its own
                os.symlink(os.path.join(folder, entry), os.path.join(mirror, entry))
        os.mkdir(os.path.join(mirror, LABELS_FOLDER))
        final = os.path.join(folder, LABELS_FOLDER, DefaultLabelTag.FINAL.value)
        if os.path.isdir(final):
            os.symlink(final, os.path.join(mirror, LABELS_FOLDER, DefaultLabelTag.FINAL.value))
        yield TumorDatastore(mirror, app_config, extensions=VOLUME_EXTENSIONS, auto_reload=False)


def in_folder(path: str, datastore: TumorDatastore, folder: str) -> str:
    """The path in ``folder`` of a file that ``datastore`` (:func:`read_only_datastore` of ``folder``) lists."""
    return os.path.join(os.path.abspath(folder), os.path.relpath(path, datastore.folder))
