"""Replies name no server folders: absolute paths in text are cut to their last component."""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from typing import Any

# One or more "/folder" steps followed by "/" and a name: the steps go, the name stays.
_FOLDERS = re.compile(r"(?:/[^/\s'\"]+)+/(?=[^/\s'\"])")


def redact(value: Any) -> Any:
    """``value`` (JSON-like) with every absolute path in its strings reduced to the file or folder name."""
    if isinstance(value, str):
        return _FOLDERS.sub("", value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, Sequence | Set) and not isinstance(value, bytes):  # lists, tuples, deques (task logs)
        return [redact(item) for item in value]
    return value
