"""Two cross-validations of the same cases and folds, compared case by case: is candidate A better than B?

Both results come from :mod:`benchmarks.crossval` (its ``crossval_<...>.json``). Each test case was segmented
by a model of A and a model of B that never saw it, so the two Dice values of a case are a pair. The comparison
gives the mean difference, the cases and folds each candidate wins, a bootstrap 95% interval of the mean
difference over cases (``scipy.stats.bootstrap``, percentile method, seeded) and the Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``), the paired test segmentation papers use. A is **clearly** better only when the whole
interval is above zero. Prints the table and writes ``compare_<A>_vs_<B>.{txt,json,png}``.

Usage: ``.venv/bin/python -m benchmarks.compare_crossval A.json B.json [--resamples 10000] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.report import save_report

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """A minus B over the cases (and labels) both cross-validations tested."""

    pairs: list[dict[str, Any]]  # case, label, fold, dice_a, dice_b, difference
    mean_a: float
    mean_b: float
    mean_difference: float
    mean_absolute_difference: float  # how far apart the two are per case, whichever is higher (two runs of one recipe)
    higher: int  # cases where A's Dice is higher
    lower: int
    folds: list[int]
    fold_difference: list[float]  # mean A minus B per fold
    interval: tuple[float, float]  # bootstrap 95% interval of the mean difference
    wilcoxon_p: float
    resamples: int
    seed: int

    @property
    def clear(self) -> bool:
        """A is better beyond doubt at the stated confidence: the whole interval is above zero."""
        return self.interval[0] > 0


def compare(a: dict[str, Any], b: dict[str, Any], resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Pair the test cases of two cross-validation results (``cases`` rows with fold, case, label and dice).

    Raises:
        ValueError: the two did not test the same cases and labels in the same folds, so they are not paired.
    """
    fold_a = {(r["case"], r["label"]): r["fold"] for r in a["cases"]}
    fold_b = {(r["case"], r["label"]): r["fold"] for r in b["cases"]}
    if fold_a != fold_b:
        only = sorted(set(fold_a) ^ set(fold_b))
        moved = sorted(k for k in set(fold_a) & set(fold_b) if fold_a[k] != fold_b[k])
        raise ValueError(
            "the two cross-validations are not paired: "
            + (f"cases tested by one only: {only}; " if only else "")
            + (f"cases in different folds: {moved}" if moved else "")
        )
    dice_b = {(r["case"], r["label"]): r["dice"] for r in b["cases"]}
    pairs = [
        {
            "case": r["case"],
            "label": r["label"],
            "fold": r["fold"],
            "dice_a": r["dice"],
            "dice_b": dice_b[(r["case"], r["label"])],
            "difference": r["dice"] - dice_b[(r["case"], r["label"])],
        }
        for r in sorted(a["cases"], key=lambda r: (r["fold"], r["case"], r["label"]))
    ]
    differences = np.array([p["difference"] for p in pairs])
    if np.ptp(differences) == 0:  # every case moved by the same amount: no spread to resample
        interval = (float(differences[0]), float(differences[0]))
    else:
        boot = stats.bootstrap(
            (differences,),
            np.mean,
            n_resamples=resamples,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        interval = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    folds = sorted({p["fold"] for p in pairs})
    return Comparison(
        pairs=pairs,
        mean_a=statistics.fmean(p["dice_a"] for p in pairs),
        mean_b=statistics.fmean(p["dice_b"] for p in pairs),
        mean_difference=float(differences.mean()),
        mean_absolute_difference=float(np.abs(differences).mean()),
        higher=int((differences > 0).sum()),
        lower=int((differences < 0).sum()),
        folds=folds,
        fold_difference=[statistics.fmean(p["difference"] for p in pairs if p["fold"] == f) for f in folds],
        interval=interval,
        wilcoxon_p=float(stats.wilcoxon(differences).pvalue) if differences.any() else 1.0,
        resamples=resamples,
        seed=seed,
    )


def report(comparison: Comparison, name_a: str, name_b: str) -> str:
    """The comparison as a table and a verdict."""
    c = comparison
    lines = [f"A = {name_a}", f"B = {name_b}", "", "case      label   fold  Dice A  Dice B   A - B"]
    lines += [
        f"{p['case']:<9} {p['label']:<7} {p['fold']:>4}  {p['dice_a']:.3f}   {p['dice_b']:.3f}  {p['difference']:+.3f}"
        for p in c.pairs
    ]
    won = [str(f) for f, d in zip(c.folds, c.fold_difference) if d > 0]
    low, high = c.interval
    lines += [
        "",
        f"mean Dice A {c.mean_a:.3f}, B {c.mean_b:.3f}; mean difference {c.mean_difference:+.3f}",
        f"a case's Dice differs by {c.mean_absolute_difference:.3f} on average "
        f"(largest {max(abs(p['difference']) for p in c.pairs):.3f})",
        f"A higher in {c.higher} of {len(c.pairs)} cases, lower in {c.lower}; "
        f"folds A wins: {len(won)} of {len(c.fold_difference)} ({', '.join(won) or 'none'})",
        "per fold A - B: " + ", ".join(f"{d:+.3f}" for d in c.fold_difference),
        f"bootstrap {CONFIDENCE:.0%} interval of the mean difference ({c.resamples} resamples of the cases, "
        f"percentile, seed {c.seed}): {low:+.3f} to {high:+.3f}",
        f"Wilcoxon signed-rank test: p = {c.wilcoxon_p:.3f}",
        "verdict: " + ("A is clearly better (the interval is above 0)" if c.clear else "no clear difference"),
    ]
    return "\n".join(lines)


def plot(comparison: Comparison, name_a: str, name_b: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = comparison.pairs
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(
        [p["case"] for p in pairs],
        [p["difference"] for p in pairs],
        color=[plt.cm.tab10(p["fold"]) for p in pairs],
    )
    ax.axhline(comparison.mean_difference, color="black", linestyle="--", label="mean difference")
    ax.axhspan(*comparison.interval, color="grey", alpha=0.25, label=f"bootstrap {CONFIDENCE:.0%} interval")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(ylabel="Dice A - Dice B", title=f"A = {name_a}, B = {name_b} (colour: fold)")
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0].removeprefix("crossval_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the candidate's crossval_<...>.json")
    parser.add_argument("b", help="the reference's crossval_<...>.json, on the same cases and folds")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    results = []
    for path in (args.a, args.b):
        with open(path) as f:
            results.append(json.load(f))
    try:
        comparison = compare(*results, resamples=args.resamples, seed=args.seed)
    except ValueError as error:
        raise SystemExit(f"{args.a} and {args.b}: {error}") from None
    name_a, name_b = _name(args.a), _name(args.b)
    text = report(comparison, f"{name_a} (--conf {results[0]['conf']})", f"{name_b} (--conf {results[1]['conf']})")
    data = {"a": args.a, "b": args.b, **asdict(comparison), "clear": comparison.clear}
    path = save_report(args.out, f"compare_{name_a}_vs_{name_b}", text, data)
    plot(comparison, name_a, name_b, path)


if __name__ == "__main__":
    main()
