"""Local datastore that refuses unusable uploads with a 4xx before anything is written."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any

from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.atomic import atomic_write
from lib.config import AppConfig
from lib.datastore.case_folders import CaseFolderEvents
from lib.datastore.names import InvalidNameError, check_name, check_tag
from lib.datastore.validation import InvalidUploadError, app_label, check_file, check_image, image_geometry
from lib.transforms.formats import VOLUME_SUFFIXES
from lib.transforms.sequences import MissingSequenceError, sequence_file, sequence_files, split_sequence_name
from lib.transforms.volume_io import write_label

logger = logging.getLogger(__name__)


@contextmanager
def checked_label(
    app_config: AppConfig, image_id: str, label_path: str, image_path: str, label_info: dict[str, Any] | None
) -> Iterator[str]:
    """The submitted label checked and written with the app's values on its image's grid, in a temporary folder
    (422 naming the problem otherwise)."""
    try:
        array = app_label(label_path, image_path, app_config.plan.labels, label_info, app_config.max_voxels)
    except InvalidUploadError as e:
        raise HTTPException(422, f"label refused: {e}") from e
    with tempfile.TemporaryDirectory() as folder:
        yield write_label(array, image_geometry(image_path), os.path.join(folder, f"{image_id}.nii.gz"))


def _version(path: str) -> tuple[int, int] | None:
    """A file's version, ``(mtime_ns, size)``, or None when it is gone."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def split_case_file(name: str, sequences: Sequence[str]) -> tuple[str, str] | None:
    """``(id, rest)`` of a listed image file: a case's first sequence ``<case>-<seq>.nii.gz`` gives ``case``,
    ``<case>/<seq>.nii.gz`` too; any other volume ``<id>.<ext>`` gives its name without the extension; None for a
    file that is no volume."""
    split = split_sequence_name(name, sequences[0]) if sequences else None
    if split is not None:
        return split[0], name[len(split[0]) :]
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return None


def named_as_sequence(name: str, sequences: Sequence[str]) -> bool:
    """Whether a file name is a sequence's own (``t2f.nii.gz``): in the studies folder itself it would be read as
    a sequence of a case whose folder is the studies folder, with other such files as its other sequences."""
    return any(name == f"{sequence}{suffix}" for sequence in sequences for suffix in VOLUME_SUFFIXES)


def case_files(folder: str, files: Iterable[str], sequences: Sequence[str]) -> list[str]:
    """The file of each case in ``folder``: a first sequence (flat ``<case>-<seq>``/``<case>_<seq>`` among
    ``files``, or ``<case>/<seq>`` in a sub-folder), or a volume that is no case's sequence (a stacked case)."""
    first = sequences[0]
    cases = []
    for name in sorted(files):
        if split_sequence_name(name, first) is not None:
            cases.append(name)
        elif not any(split_sequence_name(name, other) for other in sequences):
            if not named_as_sequence(name, sequences):
                cases.append(name)  # a stacked case
    for entry in sorted(os.listdir(folder)):
        if entry.startswith(".") or entry == LABELS_FOLDER or not os.path.isdir(os.path.join(folder, entry)):
            continue
        cases += [
            f"{entry}/{first}{s}" for s in VOLUME_SUFFIXES if os.path.isfile(os.path.join(folder, entry, first + s))
        ][:1]
    return cases


def unlisted_files(folder: str, files: Iterable[str], sequences: Sequence[str]) -> dict[str, str]:
    """What in ``folder`` looks like a case but is not listed by :func:`case_files`, and why: a file named as a
    sequence alone, sequence files of a case without its first sequence, a folder without it."""
    first, needs = sequences[0], ", ".join(sequences)
    why: dict[str, str] = {}
    for name in sorted(files):
        if named_as_sequence(name, sequences):
            why[name] = (
                f"{name} in the studies folder is named as a sequence: it is not listed (put a case's sequences in "
                f"its own folder, <case>/{name}, or name the file <case>-{name})"
            )
            continue
        for sequence in sequences[1:]:
            split = split_sequence_name(name, sequence)
            if split is not None and sequence_file(os.path.join(folder, split[0]), split[1], first) is None:
                why.setdefault(
                    split[0], f"case {split[0]} has no {first} file (needs {needs}): not listed until it is added"
                )
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.startswith(".") or entry == LABELS_FOLDER or not os.path.isdir(path):
            continue
        if not any(os.path.isfile(os.path.join(path, first + s)) for s in VOLUME_SUFFIXES):
            try:
                held = sorted(f for f in os.listdir(path) if f.lower().endswith(VOLUME_SUFFIXES))
            except OSError as e:  # lost+found at a disk's root, a dead network link: not a case, and no failure
                why[f"{entry}/"] = f"folder {entry} cannot be read ({e.strerror}): not listed"
                continue
            if held:
                why[f"{entry}/"] = (
                    f"folder {entry} holds no {first} file ({', '.join(held[:4])}; a case folder holds "
                    f"{first}.nii.gz, ... for the sequences {needs}): not listed"
                )
    return why


VOLUME_EXTENSIONS = [f"*{suffix}" for suffix in VOLUME_SUFFIXES]  # image files the datastore lists
LABELS_FOLDER = "labels"  # MONAI Label's labels folder inside the studies folder
REPLACED_FOLDER = ".replaced"  # images replaced by an upload, kept (hidden: the datastore does not list it)


class TumorDatastore(LocalDatastore):
    """:class:`LocalDatastore` with checks on every upload.

    * ``add_image``: the id must be a plain name, the file a complete volume within ``max_voxels`` with the
      model's channel count; an image that has labels is not replaced (409).
    * ``save_label``: the tag must be one of :data:`lib.datastore.names.TAGS`, and the label, whatever its tag, a
      complete file on its image's grid with values 0..K; when the client sends ``label_info`` (3D Slicer does),
      segment values are mapped to the app's label values by name.

    A refused upload raises ``HTTPException`` (4xx) naming the problem; the datastore is left unchanged.

    Args:
        studies: the studies folder.
        app_config: the app configuration.
        kwargs: passed to :class:`LocalDatastore`.
    """

    def __init__(self, studies: str, app_config: AppConfig, **kwargs: Any) -> None:
        self.app_config = app_config
        self._reported: set[str] = set()
        self._complete: dict[str, tuple[int, int]] = {}  # studies files found complete, by version (mtime, size)
        self._damaged: dict[str, tuple[int, int]] = {}  # and those found damaged
        # One writer at a time: requests' uploads and deletions, and the folder watcher's refresh, which iterates
        # over the images (a concurrent upload ended the watcher's thread, and the server then no longer saw
        # files added or removed). Checks run under it too, so a label is checked against the image it is
        # stored with, even when the image is being replaced at the same moment.
        self._writing = threading.RLock()
        super().__init__(studies, **kwargs)
        handler = getattr(self, "_handler", None)  # the folder watcher (auto_reload)
        if handler is not None:
            handler.on_moved = self._on_moved_event  # the datastore file is replaced by a rename, not modified
            if app_config.sequences:
                ignored = (LABELS_FOLDER, os.path.basename(self._datastore_config_path))
                folders = CaseFolderEvents(self._datastore.image_path(), self._on_any_event, ignored)
                self._observer.schedule(folders, path=self._datastore_path, recursive=True)

    @property
    def folder(self) -> str:
        """The studies folder the datastore lists."""
        return self._datastore_path

    def _on_moved_event(self, event: Any) -> None:
        """A file renamed into the folder: the datastore file another process (scoring, a training run, a batch job)
        rewrote (:meth:`_update_datastore_file`) is read again; an image or label is listed."""
        if os.path.realpath(getattr(event, "dest_path", "")) == os.path.realpath(self._datastore_config_path):
            self._init_from_datastore_file()
        else:
            self._on_any_event(event)

    def _reconcile_datastore(self) -> None:
        with self._writing:
            super()._reconcile_datastore()

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        """Re-read ``datastore_v2.json`` when another process (a batch job, a training run) has rewritten it.

        MONAI Label replaced the datastore first and set its folder on the next line: a request reading an image's
        path in between got a path relative to the server's working folder. Here the new datastore is complete
        before it replaces the old, and no writer is midway meanwhile.
        """
        with self._writing:
            try:
                with FileLock(self._lock_file):
                    if not os.path.exists(self._datastore_config_path):
                        return
                    stamp = os.stat(self._datastore_config_path).st_mtime
                    if stamp == self._config_ts:
                        return
                    with open(self._datastore_config_path) as f:
                        model = LocalDatastoreModel.model_validate_json(f.read())
                    model.base_path = self._datastore_path
                    self._datastore, self._config_ts = model, stamp
            except ValueError as e:
                if not throw_exception:  # a reload: keep the datastore as it was last read
                    logger.error("Cannot read %s: %s", self._datastore_config_path, str(e)[:300])
                    return
                # At start-up (after a power cut mid-write, say): keep the damaged file, rebuild from the folder.
                kept = f"{self._datastore_config_path}.damaged-{datetime.now().strftime('%Y%m%d_%H%M%S')}"
                os.replace(self._datastore_config_path, kept)
                logger.error(
                    "The datastore file %s is damaged (%s); it is kept as %s, and the list of images and labels is "
                    "rebuilt from the studies folder (their recorded info, such as who submitted a label, is lost)",
                    self._datastore_config_path,
                    str(e)[:200],
                    kept,
                )

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Write ``datastore_v2.json`` whole, then rename it over the old one (MONAI Label rewrote it in place, and a
        power cut meanwhile left a file the server could not start with)."""
        content = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
        with FileLock(self._lock_file) if lock else nullcontext():
            atomic_write(self._datastore_config_path, lambda f: f.write(content))
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

    def _remove_non_existing(self) -> int:
        """Forget images and labels whose files are gone. MONAI Label emptied the list of images and then refilled
        it: a request in between found no image at all. Here the new list replaces the old in one step."""
        with self._writing:
            self._init_from_datastore_file()
            images, labels_of = self._datastore.image_path(), self._datastore.label_path

            def exists(folder: str, name: str) -> bool:
                return os.path.exists(os.path.realpath(os.path.join(folder, name)))

            kept: dict[str, Any] = {}
            removed = 0
            for image_id, entry in list(self._datastore.objects.items()):
                if not exists(images, self._filename(image_id, entry.image.ext)):
                    logger.info("Image %s is no longer in the studies folder", image_id)
                    removed += 1
                    continue
                present = {
                    tag: label
                    for tag, label in entry.labels.items()
                    if exists(labels_of(tag), self._filename(image_id, label.ext))
                }
                removed += len(entry.labels) - len(present)
                kept[image_id] = entry.model_copy(update={"labels": present})
            self._datastore.objects = kept
            return removed

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        try:
            check_name(image_id, "image id")
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        if image_id in self.app_config.sequences:  # stored as <studies>/<sequence>.nii.gz, read as a case folder's
            raise HTTPException(422, f"image id {image_id!r} is a sequence's name: upload the case under its own id")
        for sequence in self.app_config.sequences:
            split = split_sequence_name(f"{image_id}{VOLUME_SUFFIXES[0]}", sequence)
            if split is not None:  # it would be stored as, or over, that sequence's file
                raise HTTPException(
                    422,
                    f"image id {image_id!r} names the {sequence} sequence of case {split[0]!r}: upload a case as one "
                    f"volume of {len(self.app_config.sequences)} channels under its own id",
                )
        with self._writing:
            return self._add_image(image_id, image_filename, image_info)

    def _add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        existing = self._datastore.objects.get(image_id)
        if existing is not None and self.get_labels_by_image_id(image_id):
            raise HTTPException(
                409, f"image {image_id!r} has labels and is not replaced: upload the new image under another id"
            )
        _, extension = self._to_id(os.path.basename(image_filename))
        if existing is not None and existing.image.ext != extension:
            # Both files would stay in the studies folder under one id.
            if existing.image.ext.lower() not in VOLUME_SUFFIXES:  # a case of sequence files (<id>-t2f.nii.gz)
                raise HTTPException(
                    409,
                    f"image {image_id!r} is a case of separate sequence files ({image_id}{existing.image.ext}, ...): "
                    "an upload cannot replace it; upload under another id, or delete the case first (admin)",
                )
            raise HTTPException(
                409, f"image {image_id!r} exists as a {existing.image.ext} file: replace it with a {existing.image.ext}"
            )
        try:
            app_config = self.app_config
            plan = app_config.plan
            check_image(image_filename, plan.channels, app_config.max_voxels, app_config.sequences, plan.spacing)
        except InvalidUploadError as e:
            raise HTTPException(422, f"image refused: {e}") from e
        self._keep_aside(self._filename(image_id, extension))  # also a file or link not listed yet
        return super().add_image(image_id, image_filename, image_info)

    def _keep_aside(self, name: str, folder: str | None = None) -> None:
        """Copy the file ``name`` of ``folder`` (the images' by default) that an upload is about to replace into its
        ``.replaced/`` (time-stamped; the datastore does not list it), so a replaced image or label loses nothing."""
        folder = folder or self._datastore.image_path()
        current = os.path.join(folder, name)
        if os.path.islink(current) and not os.path.exists(current):
            os.unlink(current)  # a link to nothing: written through, the upload would land where it points
            return
        if not os.path.isfile(current):
            return
        os.makedirs(os.path.join(folder, REPLACED_FOLDER), exist_ok=True)
        kept = os.path.join(folder, REPLACED_FOLDER, f"{datetime.now().strftime('%Y%m%d_%H%M%S_%f')}_{name}")
        shutil.copy2(current, kept)
        if os.path.islink(current):
            os.unlink(current)  # the upload is then written in the studies folder, not over the link's target
        logger.info("%s is replaced by an upload; the earlier file is kept as %s", name, kept)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        try:
            check_tag(label_tag)
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        with self._writing:
            if image_id not in self._datastore.objects:
                raise HTTPException(404, f"image {image_id!r} is not in the datastore")
            try:
                self.check_complete(image_id)
            except InvalidUploadError as e:
                raise HTTPException(
                    422, f"image {image_id!r} is damaged in the studies folder ({e}): replace it before labelling it"
                ) from e
            image_path = self.get_image_uri(image_id)
            with checked_label(self.app_config, image_id, label_filename, image_path, label_info) as path:
                existing = self._datastore.objects[image_id].labels.get(label_tag)
                # Two annotators on one image: the earlier label is kept, not lost; so is a file or link in the
                # new one's place that is not listed yet.
                earlier = {self._filename(image_id, self._to_id(os.path.basename(path))[1])}
                earlier |= {self._filename(image_id, existing.ext)} if existing is not None else set()
                for name in sorted(earlier):
                    self._keep_aside(name, self._datastore.label_path(label_tag))
                # The stored file holds the app's values, whatever the client named (or sent in place of names).
                names = [{"name": n, "idx": i + 1} for i, n in enumerate(self.app_config.plan.labels)]
                label_info = {**(label_info or {}), "label_info": names}
                return super().save_label(image_id, path, label_tag, label_info)

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        with self._writing:
            super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        with self._writing:
            super().update_label_info(label_id, label_tag, info)

    def get_dataset_archive(self, limit_cases: int | None) -> str:
        """A ZIP file of the labelled cases and the datastore's metadata, in a temporary file the caller removes;
        none is left behind when it cannot be written (409 when a case's file has gone from the studies folder
        since it was listed).

        ``image/`` holds every sequence of each case laid out as in the studies folder (``<case>/<seq>.nii.gz``
        too), so it is itself a studies folder; ``label/`` the final labels. Files are copied as they are, also
        one that no longer reads (an export loses nothing).
        """
        with self._writing:  # listed together; written without holding up uploads
            cases = self.datalist()[:limit_cases] if limit_cases else self.datalist()
            metadata = self._datastore.model_dump_json(exclude={"base_path"})
        images = os.path.abspath(self._datastore.image_path())
        with tempfile.NamedTemporaryFile(prefix="tumor-dataset-", suffix=".zip", delete=False) as f:
            path = f.name
        try:
            with zipfile.ZipFile(path, mode="w") as archive:
                for case in cases:
                    for file in [case["image"], *self._other_sequences(case["image"])]:
                        archive.write(file, arcname=f"image/{os.path.relpath(file, images)}")
                    archive.write(case["label"], arcname=f"label/{os.path.basename(case['label'])}")
                archive.writestr("metadata.json", metadata)
        except FileNotFoundError:
            os.remove(path)
            raise HTTPException(
                409, "a case's file has gone from the studies folder since it was listed: try again"
            ) from None
        except BaseException:
            os.remove(path)
            raise
        return path

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Every image with a final label, ``{"image": path, "label": path}``, as the studies folder lists them.

        MONAI Label resolves symbolic links here; this keeps the listed paths, because a file's name is its case's
        name in the train/validation split and in checkpoints: a studies folder of links into an archive whose
        files share one name (``STS_001.nii.gz -> STS_001/CT_image.nii.gz``) must still hold distinct cases.
        """
        tag = DefaultLabelTag.FINAL
        folders = {"image": self._datastore.image_path(), "label": self._datastore.label_path(tag)}
        pairs = []
        for image_id, entry in self._datastore.filter_by_tag(tag).items():
            files = {"image": entry.image.ext, "label": entry.labels[tag].ext}
            paths = {
                k: os.path.abspath(os.path.join(folders[k], self._filename(image_id, ext))) for k, ext in files.items()
            }
            pairs.append(
                paths if full_path else {k: os.path.relpath(p, self._datastore_path) for k, p in paths.items()}
            )
        return pairs

    def check_complete(self, image_id: str) -> None:
        """Refuse an image whose files in the studies folder are damaged or cut short (ITK reads the missing voxels
        as zeros, and a network would segment them); every sequence's file, each checked once per version.

        Raises:
            InvalidUploadError: naming the damaged file.
        """
        path = self.get_image_uri(image_id)
        for file in [path, *self._other_sequences(path)]:  # a missing sequence: reading the case names it
            version = _version(file)
            if version is None:
                continue  # gone: reading it names the problem
            if self._complete.get(file) != version:
                try:
                    check_file(file, self.app_config.max_voxels)
                except InvalidUploadError:
                    self._damaged[file] = version
                    raise
                self._complete[file] = version

    def get_image_uri(self, image_id: str) -> str:
        """The image's file as the studies folder lists it ("" for an unknown id). MONAI Label resolved links: a
        case of links into an archive whose files are named otherwise (``L-t2f.nii.gz -> archive/L/flair.nii.gz``)
        then lost its other sequences, which are found beside the listed first one."""
        obj = self._datastore.objects.get(image_id)
        if obj is None:
            return ""
        return os.path.abspath(os.path.join(self._datastore.image_path(), self._filename(image_id, obj.image.ext)))

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """The image's info; its ``name`` (the file name 3D Slicer downloads the image to, Next Sample's reply) is
        flat: a case stored as a folder of sequences is ``<case>-<seq>.nii.gz``, not ``<case>/<seq>.nii.gz``, which
        the module cannot write into its download folder."""
        info = super().get_image_info(image_id)
        if isinstance(info.get("name"), str):
            info["name"] = info["name"].replace("/", "-")
        return info

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Unlabelled images, less those found damaged (:meth:`check_complete`) and not changed since: Next Sample
        does not offer them again."""
        images = super().get_unlabeled_images(label_tag, labels)
        if not self._damaged:
            return images
        return [i for i in images if not self._is_damaged(self.get_image_uri(i))]

    def _is_damaged(self, path: str) -> bool:
        """Whether a file of the case whose first file is ``path`` was found damaged, and has not changed since."""
        return any(self._damaged.get(f) == _version(f) for f in [path, *self._other_sequences(path)])

    def _to_id(self, file: str) -> tuple[str, str]:
        """``(id, rest)`` of a file name (:func:`split_case_file`)."""
        return split_case_file(file, self.app_config.sequences) or super()._to_id(file)

    def _list_files(self, path: str, patterns: list[str]) -> dict[str, str]:
        """Volume files of a folder; for the images of a multi-sequence app, one file per case (see
        :meth:`case_files`)."""
        listed = super()._list_files(path, patterns)
        if os.path.realpath(path) != os.path.realpath(self._datastore.image_path()):
            return listed
        sequences = self.app_config.sequences
        if sequences:
            for name, why in unlisted_files(path, listed, sequences).items():
                self._warn_once(os.path.join(path, name), why)
            listed = {name: name for name in case_files(path, listed, sequences)}
            for name in listed:
                self._report_incomplete(os.path.join(path, name))
        return self._one_file_per_id(path, listed)

    def _one_file_per_id(self, path: str, listed: dict[str, str]) -> dict[str, str]:
        """The image files, one per id: of two files with one id (``P.nii.gz`` and ``P.nrrd``, or ``P.nii.gz`` and
        a case folder ``P/``) MONAI Label served one or the other, whichever the folder listed last. The one already
        listed stays (else the first by name), and the log names the other."""
        kept: dict[str, str] = {}
        ids = {name: self._to_id(name) for name in listed}

        def order(name: str) -> tuple[bool, bool, str]:  # a file that exists, then the one listed, then by name
            image_id, rest = ids[name]
            return not os.path.exists(os.path.join(path, name)), rest != self._known_ext(image_id), name

        for name in sorted(listed, key=order):
            image_id = ids[name][0]
            if image_id in kept:
                why = f"{name} in the studies folder has the id {image_id!r} of {kept[image_id]}: it is not listed"
                self._warn_once(os.path.join(path, name), f"{why} (rename one of them)")
                continue
            kept[image_id] = name
        return {name: listed[name] for name in kept.values()}

    def _known_ext(self, image_id: str) -> str | None:
        obj = self._datastore.objects.get(image_id)
        return obj.image.ext if obj is not None else None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            logger.warning("%s", message)

    def _report_incomplete(self, path: str) -> None:
        """Log, once per file, a case that lacks sequences: it is listed, and refused (422) when used."""
        if path in self._reported or split_sequence_name(path, self.app_config.sequences[0]) is None:
            return
        try:
            sequence_files(path, self.app_config.sequences)
        except MissingSequenceError as e:
            self._warn_once(path, f"Incomplete case: {e}; it is refused until its files are added")

    def remove_image(self, image_id: str) -> None:
        """Remove an image, its labels and, for a multi-sequence case, its other sequences' files (left behind,
        they would join a new case uploaded under the same name)."""
        with self._writing:
            obj = self._datastore.objects.get(image_id)
            if obj is None:
                raise HTTPException(404, f"image {image_id!r} is not in the datastore")
            for tag in list(obj.labels):
                self._remove_entry(self._label_entry(image_id, tag))
            images = os.path.abspath(self._datastore.image_path())
            listed = self.get_image_uri(image_id)
            case_folder = os.path.dirname(listed)
            if case_folder != images and os.path.islink(case_folder):
                os.unlink(case_folder)  # a case folder linked into an archive: the link goes, the archive stays
            else:
                for file in [listed, *self._other_sequences(listed)]:
                    self._remove_entry(file)
                if case_folder != images and os.path.isdir(case_folder) and not os.listdir(case_folder):
                    os.rmdir(case_folder)  # a case's own folder (<case>/<sequence>), once empty
            self.refresh()  # at once: the watcher may not see a removed link, nor remove the image before a request

    def _label_entry(self, image_id: str, tag: str) -> str:
        """The path of an image's label as the studies folder lists it (a link is not followed)."""
        label = self._datastore.objects[image_id].labels[tag]
        return os.path.join(self._datastore.label_path(tag), self._filename(image_id, label.ext))

    @staticmethod
    def _remove_entry(path: str) -> None:
        """Remove a file of the studies folder; a link is removed, never the file it points to (MONAI Label
        removed the target: a studies folder of links into an archive lost the archive's files)."""
        if os.path.lexists(path):
            os.unlink(path)

    def _other_sequences(self, path: str) -> list[str]:
        """The files of the sequences after the first of the case whose first sequence is ``path``."""
        sequences = self.app_config.sequences
        split = split_sequence_name(path, sequences[0]) if sequences else None
        if split is None:
            return []  # a single-sequence app, or a case stored as one file of all its channels
        files = (sequence_file(*split, sequence) for sequence in sequences[1:])
        return [f for f in files if f is not None]

    def remove_label(self, label_id: str, label_tag: str) -> None:
        with self._writing:
            if not self.get_label_uri(label_id, label_tag):
                raise HTTPException(404, f"image {label_id!r} has no {label_tag!r} label")
            self._remove_entry(self._label_entry(label_id, label_tag))
            if not self._auto_reload:
                self.refresh()
