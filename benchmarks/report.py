"""Where each benchmark's results go: the printed table, and the same table and the raw figures on disk."""

from __future__ import annotations

import json
import os


def save_report(out: str, name: str, text: str, data: object) -> str:
    """Print ``text`` and write it to ``out/name.txt``, ``data`` to ``out/name.json``; the plot's path is returned."""
    print("\n" + text)
    with open(os.path.join(out, f"{name}.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    return os.path.join(out, f"{name}.png")
