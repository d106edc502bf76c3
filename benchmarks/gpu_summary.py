"""The table of ``benchmarks/gpu_check.sh``: each check of issue 17 against its target, from the benchmarks' JSON.

Usage: ``.venv/bin/python -m benchmarks.gpu_summary OUT_FOLDER DEVICE`` (writes ``OUT_FOLDER/gpu_check.md``).
"""

from __future__ import annotations

import json
import os
import sys

BRATS = "BraTS-GLI-00001-000"


def _load(folder: str, name: str) -> object | None:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def rows(folder: str, device: str) -> list[tuple[str, str, str, str]]:
    """(check, measured, target, verdict) for each check whose results are in ``folder``."""
    table = []
    precision = _load(folder, f"precision_check_{device}.json")
    if isinstance(precision, list) and precision:
        low = min(r["dice"] for r in precision)
        mixed = "float16" if device == "cuda" else "bfloat16"
        verdict = "PASS" if low > 0.99 else "FAIL"
        table.append((f"labels {mixed} vs float32 (lowest Dice, {len(precision)} CT)", f"{low:.4f}", "> 0.99", verdict))
    latency = _load(folder, "infer_latency.json")
    if isinstance(latency, list):
        for t in latency:
            if t["server"] == f"ours {device}":
                target = "<= 0.3 s" if t["case"] == BRATS else ""
                verdict = ("PASS" if t["end_to_end"] <= 0.3 else "FAIL") if target else ""
                check = f"auto segmentation end to end, {t['case']} ({t['size']})"
                table.append((check, f"{t['end_to_end']:.2f} s", target, verdict))
    speed = _load(folder, "train_speed.json")
    if isinstance(speed, dict):
        for r in speed.get("throughput") or []:
            if r["device"] == device:
                measured = f"{r['samples/s']:.1f} samples/s, {r['s/epoch']:.1f} s/epoch"
                table.append((f"training throughput, {r['network']} ({r['patch']})", measured, "", ""))
        round_result = speed.get("auto_update_round")
        if round_result:
            verdict = "PASS" if round_result["status"] == "DONE" and round_result["round_s"] <= 60 else "FAIL"
            measured = f"{round_result['round_s']:.0f} s ({round_result['status']}, epochs {round_result['epochs']})"
            table.append(("one Auto-Update round (submit to both networks published)", measured, "<= 60 s", verdict))
    return table


def main() -> None:
    folder, device = sys.argv[1], sys.argv[2]
    table = rows(folder, device)
    lines = [
        f"# GPU check on {device}",
        "",
        "| check | measured | target | verdict |",
        "|---|---|---|---|",
        *[f"| {check} | {measured} | {target} | {verdict} |" for check, measured, target, verdict in table],
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "gpu_check.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
