"""The folder watcher's eye on case folders (``<case>/<seq>.nii.gz``) of a multi-sequence studies folder.

MONAI Label's watcher matches only the files of the studies folder itself: a case folder added, renamed, removed,
or given its missing sequence while the server ran went unseen (a removed one stayed listed, and requests on it
failed) until some other file changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from lib.transforms.formats import VOLUME_SUFFIXES

CHANGES = ("created", "deleted", "moved")


class CaseFolderEvents(FileSystemEventHandler):
    """Calls ``on_change`` for a case folder created, removed or renamed in ``studies`` (a link to one included,
    which is reported as a file), and for a volume file created, removed or renamed in one of its folders; hidden
    entries (``.replaced``, temporary files), the studies folder's own volume files and ``ignored`` (the labels
    folder, the datastore file) are left to MONAI Label's watcher.

    Args:
        studies: the studies folder (its images folder).
        on_change: what to call (the datastore's refresh).
        ignored: names in ``studies`` that are no case folder.
    """

    def __init__(self, studies: str, on_change: Callable[[FileSystemEvent], None], ignored: Iterable[str]) -> None:
        super().__init__()
        self.studies = os.path.abspath(studies)
        self.on_change = on_change
        self.ignored = {".", "", *ignored}

    def _concerns(self, path: str | bytes, is_directory: bool) -> bool:
        path = os.path.abspath(os.fsdecode(path))
        relative = os.path.relpath(path, self.studies).split(os.sep)
        if relative[0].startswith(".") or relative[0] in self.ignored or relative[0] == "..":
            return False
        if len(relative) == 1:  # a case folder itself, or a link to one; the folder's own files are MONAI Label's
            return is_directory or not relative[0].lower().endswith(VOLUME_SUFFIXES)
        return len(relative) == 2 and not relative[1].startswith(".") and relative[1].lower().endswith(VOLUME_SUFFIXES)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGES:
            return
        paths = [event.src_path, *([event.dest_path] if event.event_type == "moved" else [])]
        if any(self._concerns(p, event.is_directory) for p in paths):
            self.on_change(event)
