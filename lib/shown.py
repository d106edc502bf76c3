"""How a client's value appears in an error message."""

from __future__ import annotations

from typing import Any


def shown(value: Any) -> str:
    """``value`` for an error message: short, and never a path (replies name no paths, not even the client's)."""
    text = repr(value)
    return "(a path)" if "/" in text or "\\" in text else text[:40]
