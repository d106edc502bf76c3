"""benchmarks/gpu_check.sh: its syntax, its CPU fallback, and the verdicts of its table (the GPU path's logic)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.common import STS
from benchmarks.gpu_summary import BRATS, rows
from tests.support.server import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", SCRIPT], capture_output=True).returncode == 0


@pytest.mark.skipif(not os.path.isdir(STS), reason="needs ../shared/data/sts (the precision check's CT case)")
def test_without_a_gpu_the_fallback_checks_bfloat16_labels_and_writes_the_table(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path)}
    done = subprocess.run(["bash", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "No CUDA device: CPU fallback" in done.stdout
    table = (tmp_path / "gpu_check.md").read_text()
    assert "# GPU check on cpu" in table
    assert "| labels bfloat16 vs float32 (lowest Dice, 1 CT) |" in table and "| > 0.99 | PASS |" in table


def test_the_table_judges_each_gpu_figure_against_its_target(tmp_path: Path) -> None:
    (tmp_path / "precision_check_cuda.json").write_text(json.dumps([{"dice": 0.998}, {"dice": 0.985}]))
    latency = [
        {"server": "ours cuda", "case": BRATS, "size": "240x240x155", "end_to_end": 0.21},
        {"server": "ours cuda", "case": "STS_001", "size": "198x202x59", "end_to_end": 0.12},
        {"server": "ours cpu", "case": BRATS, "size": "240x240x155", "end_to_end": 2.5},
    ]
    (tmp_path / "infer_latency.json").write_text(json.dumps(latency))
    speed = {
        "throughput": [
            {"device": "cuda", "network": "segmentation", "patch": "96x96x32", "samples/s": 40.0, "s/epoch": 2.0}
        ],
        "auto_update_round": {"status": "DONE", "round_s": 75.0, "epochs": {"segmentation": 50}},
    }
    (tmp_path / "train_speed.json").write_text(json.dumps(speed))

    table = rows(str(tmp_path), "cuda")

    assert table == [
        ("labels float16 vs float32 (lowest Dice, 2 CT)", "0.9850", "> 0.99", "FAIL"),
        (f"auto segmentation end to end, {BRATS} (240x240x155)", "0.21 s", "<= 0.3 s", "PASS"),
        ("auto segmentation end to end, STS_001 (198x202x59)", "0.12 s", "", ""),
        ("training throughput, segmentation (96x96x32)", "40.0 samples/s, 2.0 s/epoch", "", ""),
        (
            "one Auto-Update round (submit to both networks published)",
            "75 s (DONE, epochs {'segmentation': 50})",
            "<= 60 s",
            "FAIL",
        ),
    ]
