"""Multi-sequence cases: the files of one case, found from its first sequence (read by
:func:`lib.transforms.volume_io.read_case`).

A case's sequences are flat files ``<case>-<seq>.<ext>`` or ``<case>_<seq>.<ext>`` (BraTS 2023 and 2021 naming) or
a folder ``<case>/<seq>.<ext>``; extensions ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``. Every sequence is put on the
first sequence's grid, which is the grid annotators see and label.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lib.transforms.formats import VOLUME_SUFFIXES

SEPARATORS = ("-", "_", "/")  # flat files <case>-<seq>, <case>_<seq>; one folder per case <case>/<seq>


class MissingSequenceError(ValueError):
    """A case lacks sequences, or a file is not named as a case's first sequence; the message says which."""


def split_sequence_name(path: str, sequence: str) -> tuple[str, str] | None:
    """``(prefix, separator)`` when ``path`` is ``<prefix><separator><sequence><suffix>``, else None."""
    for suffix in VOLUME_SUFFIXES:
        for separator in SEPARATORS:
            ending = f"{separator}{sequence}{suffix}"
            if path.endswith(ending) and len(path) > len(ending):
                return path[: -len(ending)], separator
    return None


def case_name(path: str, sequences: Sequence[str]) -> str:
    """The name a case is known by in training: its file name, with its folder's when ``path`` is the first
    sequence of a case stored as one folder of sequences (``patient7/t2f.nii.gz``: such cases' files share names)."""
    split = split_sequence_name(path, sequences[0]) if sequences else None
    if split is not None and split[1] == "/":
        return f"{os.path.basename(split[0])}/{os.path.basename(path)}"
    return os.path.basename(path)


def sequence_file(prefix: str, separator: str, sequence: str) -> str | None:
    """The file of ``sequence`` of the case named ``prefix`` (:func:`split_sequence_name`), or None."""
    candidates = (f"{prefix}{separator}{sequence}{suffix}" for suffix in VOLUME_SUFFIXES)
    return next((f for f in candidates if os.path.isfile(f)), None)


def sequence_files(path: str, sequences: Sequence[str]) -> list[str]:
    """The files of the case whose first sequence is ``path``, in ``sequences`` order.

    Raises:
        MissingSequenceError: ``path`` is not named as a first sequence, or the case lacks sequences (named).
    """
    split = split_sequence_name(path, sequences[0])
    if split is None:
        raise MissingSequenceError(f"{os.path.basename(path)} is not named <case>-{sequences[0]}.<ext>")
    prefix, separator = split
    files, missing = ([path], []) if os.path.isfile(path) else ([], [sequences[0]])
    for sequence in sequences[1:]:
        found = sequence_file(prefix, separator, sequence)
        if found:
            files.append(found)
        else:
            missing.append(sequence)
    if missing:
        case = os.path.basename(prefix)
        raise MissingSequenceError(f"case {case} lacks sequence(s) {', '.join(missing)} (needs {', '.join(sequences)})")
    return files


def case_version(path: str, sequences: Sequence[str]) -> tuple[tuple[str, int, int] | tuple[str, None, None], ...]:
    """What a case's content is now: each of its files' path, modification time and size (None when the file is
    missing), the first sequence's and, for a multi-sequence case, every other's. A cache keyed on it is not
    served after any sequence is replaced, added or removed."""
    split = split_sequence_name(path, sequences[0]) if sequences else None
    files = [path]
    if split is not None:
        files += [sequence_file(*split, sequence) or f"{split[0]}{split[1]}{sequence}" for sequence in sequences[1:]]
    version: list[tuple[str, int, int] | tuple[str, None, None]] = []
    for file in files:
        try:
            status = os.stat(file)
        except OSError:
            version.append((file, None, None))
        else:
            version.append((file, status.st_mtime_ns, status.st_size))
    return tuple(version)
