"""What a folder holds, to assert that code only read it."""

from __future__ import annotations

from pathlib import Path


def entries(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder``, hidden ones included, with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}
