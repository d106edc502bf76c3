"""Names a client may give the server: image ids, session ids and label tags."""

from __future__ import annotations

import re

MAX_NAME = 128
# A plain file-name stem: printable, no path separators, not starting with a dot (no hidden files, no '..').
_PLAIN = re.compile(r"^[^/\\.\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*$")
FINAL, ORIGINAL = "final", "original"
# Label tags, each a folder under labels/: final (an annotator's submitted label), original (a pre-segmentation
# saved by infer with save_label).
TAGS = (FINAL, ORIGINAL)


class InvalidNameError(ValueError):
    """A client-given name is not acceptable; the message says why."""


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain name of at most ``MAX_NAME`` characters: no path separators, no control
    characters (NUL included), no leading dot or space."""
    if not isinstance(value, str) or not value:
        raise InvalidNameError(f"{what} is empty")
    if len(value) > MAX_NAME:
        raise InvalidNameError(f"{what} is {len(value)} characters long; at most {MAX_NAME} are accepted")
    if not _PLAIN.match(value) or value != value.strip():
        # The value is not echoed: it may be a path, and replies name no paths.
        raise InvalidNameError(f"{what} must be a plain name (no path separators, control characters or leading dot)")
    return value


def check_tag(value: str) -> str:
    """``value`` if it is one of the label tags :data:`TAGS`."""
    if value not in TAGS:
        raise InvalidNameError(f"label tag {str(value)[:40]!r} is not accepted; accepted tags: {', '.join(TAGS)}")
    return value
