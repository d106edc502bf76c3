"""Write an evaluation: ``metrics.csv`` (one row per case and label), ``summary.json``, ``report.md`` and plots."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "case",
    "label",
    "dice",
    "precision",
    "recall",
    "hd95_mm",
    "surface_dice",
    "lesion_precision",
    "lesion_recall",
    "lesion_f1",
    "volume_ml_true",
    "volume_ml_pred",
    "lesion_tp",
    "lesion_fp",
    "lesion_fn",
)
SUMMARISED = COLUMNS[2:12]


def _defined(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if not math.isnan(float(v))]


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, median, standard deviation, min and max of the defined values, and how many there are."""
    defined = _defined(values)
    if not defined:
        return {"n": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    return {
        "n": len(defined),
        "mean": statistics.fmean(defined),
        "median": statistics.median(defined),
        "std": statistics.stdev(defined) if len(defined) > 1 else 0.0,
        "min": min(defined),
        "max": max(defined),
    }


def summarise(rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Per label: the spread of every metric over cases, and lesion detection pooled over all cases."""
    labels: dict[str, Any] = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        tp, fp, fn = (sum(r[k] for r in mine) for k in ("lesion_tp", "lesion_fp", "lesion_fn"))
        labels[label] = {
            "cases": len(mine),
            **{metric: spread([r[metric] for r in mine]) for metric in SUMMARISED},
            "lesions_pooled": {
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / (tp + fn) if tp + fn else None,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            },
        }
    return {"settings": settings, "labels": labels}


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The report a clinician reads: the settings, the summary per label, every case, and the definitions."""
    settings = summary["settings"]
    lines = [
        "# Segmentation evaluation",
        "",
        f"Predictions: `{settings['predictions']}`; references: `{settings['labels']}`; {len(rows)} case-label rows.",
        f"Surface Dice tolerance: {settings['tolerance_mm']} mm. Distances and volumes use each image's spacing.",
        "",
        "## Summary (over cases; `-` where a metric is undefined, see Definitions)",
        "",
        "| label | metric | n | mean | median | std | min | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, entry in summary["labels"].items():
        for metric in SUMMARISED:
            s = entry[metric]
            values = " | ".join(_cell(s[k]) for k in ("mean", "median", "std", "min", "max"))
            lines.append(f"| {label} | {metric} | {s['n']} | {values} |")
        pooled = entry["lesions_pooled"]
        lines.append(
            f"| {label} | lesions pooled (TP {pooled['tp']}, FP {pooled['fp']}, FN {pooled['fn']}) | | "
            f"precision {_cell(pooled['precision'])} | recall {_cell(pooled['recall'])} | "
            f"F1 {_cell(pooled['f1'])} | | |"
        )
    lines += ["", "## Cases", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    lines += [
        "",
        "## Definitions",
        "",
        "- Dice = 2|P∩T| / (|P| + |T|); precision = |P∩T| / |P|; recall (sensitivity) = |P∩T| / |T| (voxels).",
        "- hd95_mm: 95th percentile of the symmetric surface distances (MONAI `compute_hausdorff_distance`).",
        "- surface_dice: share of both surfaces within the tolerance of the other (MONAI `compute_surface_dice`).",
        "- Lesions: 26-connected components. A reference lesion is found (TP) when a predicted component overlaps",
        "  it; a predicted component overlapping no reference lesion is FP; a reference lesion not found is FN.",
        "- Both masks empty: every overlap and lesion score 1, hd95 0. Reference empty, prediction not: Dice,",
        "  precision, surface Dice, lesion precision and F1 are 0; recall and hd95 undefined. Prediction empty,",
        "  reference not: Dice, recall, surface Dice, lesion recall and F1 are 0; precision and hd95 undefined.",
        "  Undefined values are left out of the summary (its n counts the defined ones).",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path_bars: str, path_box: str) -> None:
    """Per-case Dice bars (one panel per label) and box plots of Dice, surface Dice and HD95 per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes = plt.subplots(len(labels), 1, figsize=(max(6, 0.35 * len(rows) / len(labels) + 2), 3 * len(labels)))
    for ax, label in zip(list(getattr(axes, "flat", [axes])), labels):
        mine = [r for r in rows if r["label"] == label]
        ax.bar([r["case"] for r in mine], [r["dice"] for r in mine], color="tab:blue")
        ax.set(ylim=(0, 1), ylabel="Dice", title=f"{label}: Dice per case")
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    fig.tight_layout()
    fig.savefig(path_bars, dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, metric in zip(axes, ("dice", "surface_dice", "hd95_mm")):
        data = [_defined([r[metric] for r in rows if r["label"] == label]) for label in labels]
        ax.boxplot(data, tick_labels=labels)
        ax.set(title=metric, ylim=(0, 1) if metric != "hd95_mm" else (0, None))
    fig.tight_layout()
    fig.savefig(path_box, dpi=120)
    plt.close(fig)


def write_report(out: str, rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Write every output file into ``out``; returns the summary."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in COLUMNS})
    summary = summarise(rows, settings)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(markdown(rows, summary))
    plot(rows, os.path.join(out, "dice_per_case.png"), os.path.join(out, "metrics_boxplot.png"))
    return summary
