"""Names a client may give the server: image ids, session ids and label tags."""

from __future__ import annotations

import re
import unicodedata

from lib.transforms.formats import VOLUME_SUFFIXES

MAX_NAME = 128
# A plain file-name stem: printable, no path separators, not starting with a dot (no hidden files, no '..').
_PLAIN = re.compile(r"^[^/\\.\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*$")
# Unicode characters that are invisible or stand for something else: other controls (C1, such as U+0085), format
# characters (right-to-left override, zero-width space), line and paragraph separators, surrogates, private use and
# unassigned code points. Two ids that look alike must not name two files.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
REPLACEMENT_CHARACTER = "\ufffd"  # what a byte that is not UTF-8 decodes to: several ids would collapse into one
# File types a name must not end with: the server adds a name's file type itself, and ITK's NIfTI writer drops a
# doubled one ("case.nii" + ".nii.gz" is written as "case.nii").
FILE_TYPES = (*VOLUME_SUFFIXES, ".nhdr", ".mhd", ".hdr", ".img", ".nia", ".gz", ".dcm")
FINAL, ORIGINAL = "final", "original"
# Label tags, each a folder under labels/: final (an annotator's submitted label), original (a pre-segmentation
# saved by infer with save_label).
TAGS = (FINAL, ORIGINAL)


class InvalidNameError(ValueError):
    """A client-given name is not acceptable; the message says why."""


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain name of at most ``MAX_NAME`` characters: no path separators, no control, format
    or other invisible characters (NUL included), no leading dot or space, no file type at its end."""
    if not isinstance(value, str) or not value:
        raise InvalidNameError(f"{what} is empty")
    if len(value) > MAX_NAME:
        raise InvalidNameError(f"{what} is {len(value)} characters long; at most {MAX_NAME} are accepted")
    if not _PLAIN.match(value) or value != value.strip():
        # The value is not echoed: it may be a path, and replies name no paths.
        raise InvalidNameError(f"{what} must be a plain name (no path separators, control characters or leading dot)")
    if REPLACEMENT_CHARACTER in value:
        raise InvalidNameError(f"{what} is not valid UTF-8 text")
    if any(unicodedata.category(c) in _HIDDEN_CATEGORIES for c in value):
        raise InvalidNameError(f"{what} holds invisible or control characters (such as U+0085 or U+202E)")
    file_type = next((t for t in FILE_TYPES if value.lower().endswith(t)), None)
    if file_type:
        raise InvalidNameError(f"{what} ends in the file type {file_type!r}: give the name without it")
    return value


def check_tag(value: str) -> str:
    """``value`` if it is one of the label tags :data:`TAGS`."""
    if value not in TAGS:
        raise InvalidNameError(f"label tag {str(value)[:40]!r} is not accepted; accepted tags: {', '.join(TAGS)}")
    return value
