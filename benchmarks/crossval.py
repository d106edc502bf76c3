"""5-fold cross-validation of the training recipe on the 20 STS cases (issue 16's yardstick for a shipped model).

Builds a studies folder of every STS case with its expert outline (CT or MR T1), then runs
:func:`lib.trainers.crossval.cross_validate`: each fold trains from scratch with the app's trainer under the given
``--conf`` and segments its held-out cases through the served inference path. Prints per-case and per-fold Dice
and writes ``crossval_<modality>.*`` (table, JSON, plot, and the Markdown tables of a model card) and the
folds' checkpoints to ``--out``.

Usage: ``.venv/bin/python -m benchmarks.crossval [--modality CT] [--folds 5] [--conf train_minutes 8] ...``
(``--resume``: an interrupted run's finished folds are reused, so a cross-validation can span several sittings).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile

from benchmarks.common import FILES, STS, labelled_studies, require_data
from benchmarks.report import save_report
from lib.evaluation.metrics import SURFACE_TOLERANCE_MM
from lib.trainers.crossval import cross_validate
from tests.support.server import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=sorted(FILES), default="CT")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("--name", default="", help="suffix of the result files, to keep candidates apart")
    parser.add_argument(
        "--trained",
        nargs="+",
        help="an earlier run's folder (results/crossval_...): evaluate its fold models; several: as one ensemble",
    )
    parser.add_argument("--resume", action="store_true", help="reuse the folds an interrupted run finished")
    parser.add_argument("--seed", type=int, help="fold i trains with seed + i, so the run can be repeated")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # each fold's test Dice as it ends
    require_data(STS)
    conf = {"modality": args.modality.lower(), **dict(args.conf)}
    cases = sorted(c for c in os.listdir(STS) if c.startswith("STS_"))
    name = f"crossval_{args.modality.lower()}{'_' + args.name if args.name else ''}"
    image, mask = FILES[args.modality]
    with tempfile.TemporaryDirectory() as tmp:
        studies = labelled_studies(os.path.join(tmp, "studies"), STS, cases, cases, image, mask)
        out = os.path.join(args.out, name)
        result = cross_validate(studies, out, args.folds, conf, args.trained, args.resume, args.seed)
    seeded = f", --seed {args.seed}" if args.seed is not None else ""
    lines = [f"{args.folds}-fold cross-validation, {args.modality}, {len(cases)} STS cases; --conf {conf}{seeded}", ""]
    lines += [
        f"fold {r['fold']}  {r['case']:<8} Dice {r['dice']:.3f}  HD95 {r['hd95_mm']:.1f} mm" for r in result["cases"]
    ]
    minutes = [run["minutes"] for run in result["runs"]]
    lines += [
        "",
        f"mean Dice {result['mean_dice']:.3f}, median {result['median_dice']:.3f}, "
        f"lowest {min(r['dice'] for r in result['cases']):.3f}",
        "per fold: " + ", ".join(f"{d:.3f}" for d in result["fold_mean_dice"]),
        f"training minutes per fold: mean {statistics.fmean(minutes):.1f}",
    ]
    path = save_report(args.out, name, "\n".join(lines), result)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(card_tables(result))
    plot(result, path)


def card_tables(result: dict) -> str:
    """The cross-validation as model cards show it (Markdown): per fold, then per case and label, then over cases."""
    rows = sorted(result["cases"], key=lambda r: (r["fold"], r["case"], r["label"]))
    lines = ["| fold | test cases | mean test Dice | training minutes |", "|---|---|---|---|"]
    for run, dice in zip(result["runs"], result["fold_mean_dice"]):
        lines.append(f"| {run['fold']} | {', '.join(run['test'])} | {dice:.3f} | {run['minutes']:.1f} |")
    lines += [
        "",
        f"| case | label | fold | Dice | precision | recall | HD95 (mm) | surface Dice ({SURFACE_TOLERANCE_MM:g} mm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['label']} | {r['fold']} | {r['dice']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} "
        f"| {r['hd95_mm']:.1f} | {r['surface_dice']:.3f} |"
        for r in rows
    ]
    dice = [r["dice"] for r in rows]
    lines += [
        "",
        f"Mean test Dice {result['mean_dice']:.3f} (median {result['median_dice']:.3f}, "
        f"standard deviation {statistics.pstdev(dice):.3f}, lowest {min(dice):.3f}, highest {max(dice):.3f}) over "
        f"{len(dice)} cases.",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result["cases"], key=lambda r: r["case"])
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar([r["case"] for r in rows], [r["dice"] for r in rows], color=[plt.cm.tab10(r["fold"]) for r in rows])
    ax.axhline(result["mean_dice"], color="black", linestyle="--", label=f"mean {result['mean_dice']:.3f}")
    ax.set(ylim=(0, 1), ylabel="test Dice", title="Cross-validated Dice per case (colour: fold)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
