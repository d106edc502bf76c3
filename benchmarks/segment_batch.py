"""Batch pre-segmentation throughput: ``tumor-segment`` on the 20 STS CT images, in one process and on local Dask
clusters of 1 and 2 workers (issue 17's cases per minute, and how they scale from 1 to 2 workers).

Each setting segments a fresh output folder with the shipped CT model (``--conf device cpu``); the wall time counts
everything the command does (the cluster's start included) and the per-case time is the worker's own. Run it on an
otherwise idle machine: the figures are CPU-bound.

Usage: ``.venv/bin/python -m benchmarks.segment_batch [--repeat 2] [--settings 0,1,2]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

from benchmarks.common import IMAGE, STS, require_data
from benchmarks.report import save_report
from lib.segment.cli import JOURNAL, run_batch
from tests.support.server import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="copies of each image, to lengthen the run")
    parser.add_argument("--settings", default="0,1,2", help="worker counts to measure (0: in this process)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    require_data(STS)
    cases = sorted(c for c in os.listdir(STS) if c.startswith("STS_"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "archive")
        os.makedirs(archive)
        for case in cases:
            for copy in range(args.repeat):
                shutil.copy(os.path.join(STS, case, IMAGE), os.path.join(archive, f"{case}_{copy}.nii.gz"))
        for workers in [int(w) for w in args.settings.split(",")]:
            output = os.path.join(tmp, f"out{workers}")
            start = time.perf_counter()
            counts = run_batch(archive, output, {"device": "cpu", "model_dir": os.path.join(tmp, "m")}, workers)
            minutes = (time.perf_counter() - start) / 60
            with open(os.path.join(output, JOURNAL)) as f:
                seconds = [json.loads(line)["seconds"] for line in f]
            rows.append(
                {
                    "workers": workers,
                    "cases": sum(counts.values()),
                    "failed": counts["failed"],
                    "minutes": minutes,
                    "cases_per_minute": sum(counts.values()) / minutes,
                    "median_case_s": statistics.median(seconds),
                }
            )
    base = next((r for r in rows if r["workers"] == 1), rows[0])
    lines = [
        f"tumor-segment on {len(cases)} STS CT images x {args.repeat} copies, shipped CT model, "
        f"{os.cpu_count()} CPU cores",
        "",
        "| engine | cases | wall time | cases per minute | vs 1 worker | median per case (worker) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        engine = "this process" if r["workers"] == 0 else f"Dask, {r['workers']} worker(s)"
        lines.append(
            f"| {engine} | {r['cases']} | {r['minutes'] * 60:.0f} s | {r['cases_per_minute']:.1f} | "
            f"{r['cases_per_minute'] / base['cases_per_minute']:.2f}x | {r['median_case_s']:.2f} s |"
        )
    path = save_report(args.out, "segment_batch", "\n".join(lines), rows)
    plot(rows, path)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["this process" if r["workers"] == 0 else f"Dask x{r['workers']}" for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(labels, [r["cases_per_minute"] for r in rows], color="tab:blue")
    ax.set(ylabel="cases per minute", title="tumor-segment throughput (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
