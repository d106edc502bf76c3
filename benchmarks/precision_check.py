"""Mixed precision changes no label: auto segmentation with ``amp on`` against ``amp off`` (float32), same weights.

On CUDA ``amp on`` is float16 (the GPU default); on a CPU it is bfloat16. Each STS CT image is segmented by the
shipped CT model through the served inference path (:class:`SegmentationInfer`) both ways; the table gives the Dice
between the two labels per case (target > 0.99: mixed precision may flip only boundary voxels), and each way's
median time.

Usage: ``.venv/bin/python -m benchmarks.precision_check [--device cuda] [--cases STS_001 STS_005 ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import IMAGE, STS, require_data
from benchmarks.report import save_report
from lib.config import parse_config
from lib.infers import SegmentationInfer
from lib.trainers.offline import APP_DIR
from lib.transforms.volume_io import read_volume
from tests.support.annotator import dice
from tests.support.server import ROOT

DEFAULT_CASES = ("STS_001", "STS_005", "STS_009", "STS_013", "STS_017")
TARGET = 0.99


def segment(infer: SegmentationInfer, image: str) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    path, _ = infer({"image": image, "result_extension": ".nii.gz"})
    seconds = time.perf_counter() - start
    label, _ = read_volume(path)
    os.remove(path)
    return label[0] > 0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    require_data(STS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        infers = {
            amp: SegmentationInfer(parse_config({"device": args.device, "amp": amp, "model_dir": tmp}, APP_DIR))
            for amp in ("off", "on")
        }
        for case in args.cases:
            image = os.path.join(STS, case, IMAGE)
            segment(infers["off"], image)  # warm-up: loads the network, first CUDA kernels
            full, full_s = segment(infers["off"], image)
            mixed, mixed_s = segment(infers["on"], image)
            rows.append({"case": case, "dice": dice(full, mixed), "float32_s": full_s, "mixed_s": mixed_s})
    low = min(r["dice"] for r in rows)
    mixed = "float16" if args.device.startswith("cuda") else "bfloat16"
    lines = [
        f"Labels in {mixed} against float32 on {args.device}, shipped CT model, {len(rows)} STS CT cases",
        "",
        f"| case | Dice {mixed} vs float32 | float32 | {mixed} |",
        "|---|---|---|---|",
        *[f"| {r['case']} | {r['dice']:.4f} | {r['float32_s']:.2f} s | {r['mixed_s']:.2f} s |" for r in rows],
        "",
        f"lowest Dice {low:.4f} (target > {TARGET}): {'PASS' if low > TARGET else 'FAIL'}; median time float32 "
        f"{statistics.median(r['float32_s'] for r in rows):.2f} s, {mixed} "
        f"{statistics.median(r['mixed_s'] for r in rows):.2f} s",
    ]
    save_report(args.out, f"precision_check_{args.device.split(':')[0]}", "\n".join(lines), rows)


if __name__ == "__main__":
    main()
