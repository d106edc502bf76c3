"""Simulated annotation campaign on the STS sarcomas: does the model learn from each submitted label?

Starts with no labels and an untrained model (``--conf checkpoint FILE``: from a starting model; not the shipped
one, which trained on every STS case) and loops, for each active-learning strategy:

1. the strategy picks the next case (``next_sample``);
2. the app pre-segments it (``infer segmentation``; before the first training there is nothing to show);
3. the simulated annotator corrects it into the true outline and submits it (``save_label``, tag ``final``); the
   annotation effort is the fraction of the tumour's voxels they had to change, |prediction != truth| / |truth|;
4. one fine-tuning round runs (``train``, as Auto-Update starts it), bounded by ``--train-minutes`` or, with
   ``--conf epochs N --train-minutes 600``, by epochs (a figure other work on the machine cannot change);
5. the model pre-segments a fixed set of held-out dev cases, never labelled, and their mean Dice is recorded: as
   served (with the largest-component post-processing the round's validation chose) and without post-processing;
6. for ``epistemic``, the app scores the unlabelled cases again (``scoring epistemic``).

Everything goes through the app object's own methods (``apps/tumor/main.py``: strategies, inference, training,
scoring), in this process instead of over HTTP. The click network does not change the pre-segmentation, so it
is not trained here (``click_epochs 0``): the whole budget of a round goes to the segmentation network.

Round 0 is the starting weights (``--conf checkpoint``) before any label; the report says in how many rounds the dev
Dice fell below them. Annotators label cases the starting model never saw, so the campaign never offers a case
the starting checkpoint records having trained or chosen its epoch on (``trained_on``, ``validated_on``): fine-tuning
on those would measure nothing, and the served weights could not compete fairly as "epoch 0" of a round validated on
them. Start from a model trained on some STS cases (``lib.trainers.offline``) and measure on cases it never saw
(``--dev``); the rest are the pool (see benchmarks/README.md, "Fine-tuning from a starting model"). ``--include-seen``
offers them too: labels that hold nothing new, which measures forgetting alone.

Usage: ``.venv/bin/python -m benchmarks.campaign [--modality CT|MR] [--labels 15] [--train-minutes 2]
[--strategies random epistemic] [--conf key value ...] [--dev CASE ...] [--include-seen] [--name NAME]
[--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.utils import set_determinism

from benchmarks.common import FILES, STS, read_mask, split_cases
from benchmarks.report import save_report
from tests.support.annotator import dice
from tests.support.server import APP, ROOT


@dataclass
class Step:
    """One labelled case of a campaign."""

    strategy: str
    labels: int
    case: str
    effort: float
    train_s: float
    epochs: int
    dev_dice: float
    dev_dice_per_case: dict[str, float]
    dev_dice_raw: float  # without the largest-component post-processing
    keep_largest: list[str]  # the labels the round's validation chose to post-process
    scoring_s: float


def make_app(studies: str, conf: dict[str, str]):
    """The tumour app in this process; scoring is run explicitly, not by the server's auto-update."""
    from monailabel.config import settings

    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False  # no file watcher: the campaign is the only writer
    from apps.tumor.main import TumorApp

    return TumorApp(APP, studies, conf)


def pre_segmentation(app, image: str, keep_largest: str = "auto") -> np.ndarray | None:
    """The served model's segmentation of ``image``, or None before any weights exist.

    ``image`` is a datastore id (through the app's route, as an annotator gets it) or the path of a dev image
    outside the datastore (through MONAI Label's own ``infer``, which the app's route refuses paths to).
    """
    from fastapi import HTTPException
    from monailabel.interfaces.app import MONAILabelApp

    from lib.infers.errors import ModelNotTrainedError

    request = {"model": "segmentation", "image": image, "result_extension": ".nii.gz", "keep_largest": keep_largest}
    try:
        result = MONAILabelApp.infer(app, request) if os.path.isabs(image) else app.infer(request)
    except ModelNotTrainedError:
        return None
    except HTTPException as e:
        if e.status_code == 409:  # no trained weights yet
            return None
        raise
    mask = read_mask(result["file"])
    os.remove(result["file"])
    return mask


def run_campaign(strategy: str, pool: list[str], dev: list[str], args: argparse.Namespace, tmp: str) -> list[Step]:
    image_name, mask_name = FILES[args.modality]
    studies = os.path.join(tmp, strategy, "studies")
    os.makedirs(studies)
    for case in pool:
        shutil.copy(os.path.join(args.data, case, image_name), os.path.join(studies, f"{case}.nii.gz"))
    conf = {
        "modality": args.modality.lower(),
        "model_dir": os.path.join(tmp, strategy, "model"),
        "click_epochs": "0",
        "train_minutes": str(args.train_minutes),
        "checkpoint": "none",  # from scratch; --conf checkpoint auto starts from the shipped model
        **dict(args.conf),
    }
    random.seed(args.seed)  # MONAI Label's Random strategy draws from Python's generator
    set_determinism(args.seed)
    app = make_app(studies, conf)
    truths = {c: read_mask(os.path.join(args.data, c, mask_name)) for c in pool + dev}
    steps = [starting_point(app, strategy, dev, truths, args)]
    for n in range(1, args.labels + 1):
        case = app.next_sample({"strategy": strategy})["id"]
        shown = pre_segmentation(app, case)
        truth = truths[case]
        effort = float((shown != truth).sum() / truth.sum()) if shown is not None else 1.0
        app.datastore().save_label(case, os.path.join(args.data, case, mask_name), "final", {})

        start = time.perf_counter()
        stats = app.train({"model": "segmentation"})
        train_s = time.perf_counter() - start

        per_case, raw = dev_dice(app, dev, truths, args)
        scoring_s = 0.0
        if strategy == "epistemic" and n < args.labels:
            start = time.perf_counter()
            app.scoring({"method": "epistemic"})
            scoring_s = time.perf_counter() - start
        step = Step(
            strategy,
            n,
            case,
            effort,
            train_s,
            int(stats.get("epoch", 0)),
            statistics.mean(per_case.values()),
            per_case,
            raw,
            list(stats.get("keep_largest", [])),
            scoring_s,
        )
        print(
            f"{strategy:<10} labels {n:>2}  picked {case}  effort {effort:.2f}  round {train_s:.0f} s "
            f"({step.epochs} epochs)  dev Dice {step.dev_dice:.3f} (without post-processing "
            f"{step.dev_dice_raw:.3f}; largest component: {', '.join(step.keep_largest) or 'none'})  "
            f"scoring {scoring_s:.0f} s",
            flush=True,
        )
        steps.append(step)
    return steps


def dev_dice(app, dev: list[str], truths: dict, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """Dice of the served model on each dev case (as served), and the mean without post-processing; zeros
    before any weights exist."""
    image_name = FILES[args.modality][0]
    per_case, raw = {}, []
    for d in dev:
        path = os.path.join(args.data, d, image_name)
        served = pre_segmentation(app, path)
        if served is None:
            return {d: 0.0 for d in dev}, 0.0
        per_case[d] = dice(served, truths[d])
        raw.append(dice(pre_segmentation(app, path, keep_largest="off"), truths[d]))
    return per_case, statistics.mean(raw)


def starting_point(app, strategy: str, dev: list[str], truths: dict, args: argparse.Namespace) -> Step:
    """Round 0: the dev Dice of the weights served before any label (0 when there are none)."""
    per_case, raw = dev_dice(app, dev, truths, args)
    step = Step(strategy, 0, "", 0.0, 0.0, 0, statistics.mean(per_case.values()), per_case, raw, [], 0)
    print(f"{strategy:<10} labels  0  dev Dice {step.dev_dice:.3f} (the starting weights)", flush=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=STS)
    parser.add_argument("--modality", choices=sorted(FILES), default="CT")
    parser.add_argument("--labels", type=int, default=15, help="cases labelled per campaign (at most 15)")
    parser.add_argument("--train-minutes", type=float, default=2.0, help="time budget of each fine-tuning round")
    parser.add_argument("--strategies", nargs="+", default=["random", "epistemic"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument(
        "--dev",
        nargs="+",
        help="the held-out cases (default: every 4th STS case); e.g. the test "
        "cases of the cross-validation fold whose model --conf checkpoint starts from",
    )
    parser.add_argument(
        "--include-seen",
        action="store_true",
        help="also offer the cases the starting checkpoint trained or chose its epoch on (forgetting alone)",
    )
    parser.add_argument("--name", default="", help="suffix of the result files, to keep variants apart")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"no STS data at {args.data}: this benchmark needs ../shared/data/sts")
    pool, dev = split_cases(args.data, args.dev)
    seen = seen_by_start(args)
    if set(dev) & seen:
        raise SystemExit(f"the starting checkpoint saw dev cases {sorted(set(dev) & seen)}: choose others (--dev)")
    pool = pool if args.include_seen else [c for c in pool if c not in seen]
    if not pool:
        raise SystemExit(
            "the starting checkpoint saw every case outside --dev: none is left to label (--include-seen offers them)"
        )
    args.labels = min(args.labels, len(pool))
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)

    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            steps += run_campaign(strategy, pool, dev, args, tmp)
    report(steps, dev, args)


def seen_by_start(args: argparse.Namespace) -> set[str]:
    """The STS cases the starting checkpoint (``--conf checkpoint``) records having trained or chosen its epoch on."""
    from lib.checkpoint import read_checkpoint, serving_checkpoint
    from lib.trainers.offline import offline_config  # from scratch unless --conf checkpoint names one, as here

    with tempfile.TemporaryDirectory() as model_dir:
        app_config = offline_config({"modality": args.modality.lower(), **dict(args.conf)}, model_dir)
        path = serving_checkpoint(app_config)
    if path is None:
        return set()
    meta = read_checkpoint(path, app_config.plan)[1]
    # Recorded as image file names (lib.trainers.cases.case_id), e.g. STS_001.nii.gz; STS case names hold no dot.
    return {f.split(".", 1)[0] for f in [*meta.get("trained_on", []), *meta.get("validated_on", [])]}


def round_budget(args: argparse.Namespace) -> str:
    """What bounds a round: ``--conf epochs`` when given, else the time budget."""
    epochs = dict(args.conf).get("epochs")
    return f"{epochs} epochs (budget {args.train_minutes:g} min)" if epochs else f"{args.train_minutes:g} min"


def report(steps: list[Step], dev: list[str], args: argparse.Namespace) -> None:
    name = f"campaign_{args.modality.lower()}{'_' + args.name if args.name else ''}"
    by = {s: {x.labels: x for x in steps if x.strategy == s} for s in args.strategies}
    lines = [
        f"Simulated annotation campaign, STS {args.modality}: {args.labels} labels per strategy, rounds of "
        f"{round_budget(args)}, dev cases {', '.join(dev)}; {os.cpu_count()} CPU cores"
        + (f"; conf {dict(args.conf)}" if args.conf else "")
        + ("; --include-seen" if args.include_seen else ""),
        "",
        f"{'labels':>6}" + "".join(f"{s + ' Dice':>17}{s + ' effort':>18}" for s in args.strategies),
    ]
    for n in range(args.labels + 1):  # 0: the starting weights, before any label
        efforts = [f"{at[n].effort:>18.2f}" if n else f"{'-':>18}" for at in by.values()]  # nothing to label at 0
        lines.append(f"{n:>6}" + "".join(f"{at[n].dev_dice:>17.3f}{e}" for at, e in zip(by.values(), efforts)))
    lines.append("")
    for s, at in by.items():
        rounds = [at[n] for n in range(1, args.labels + 1)]
        late = at[min(10, args.labels)]  # the yardstick is the 10th case; a shorter campaign, its last
        fall = f"falls {1 - late.effort / at[1].effort:.0%}" if at[1].effort else "none to fall from"
        lines.append(
            f"{s}: dev Dice at {args.labels} labels {rounds[-1].dev_dice:.3f}; effort case 1 {at[1].effort:.2f} -> "
            f"case {late.labels} {late.effort:.2f} ({fall}); mean round "
            f"{statistics.mean(x.train_s for x in rounds):.0f} s"
        )
        if at[0].dev_dice > 0:
            below = [x.labels for x in rounds if x.dev_dice < at[0].dev_dice]
            lowest = min(rounds, key=lambda x: x.dev_dice)
            lines.append(
                f"{s}: starting weights {at[0].dev_dice:.3f}; lowest round {lowest.dev_dice:.3f} (labels "
                f"{lowest.labels}); below the start in {len(below)} of {len(rounds)} rounds"
                + (f" ({', '.join(map(str, below))})" if below else "")
            )
        chosen = [x.dev_dice - x.dev_dice_raw for x in rounds if x.keep_largest]
        lines.append(
            f"{s}: largest-component post-processing chosen in {len(chosen)} of {len(rounds)} rounds; dev Dice with it "
            f"minus without, mean over those rounds {statistics.mean(chosen) if chosen else 0.0:+.3f}"
        )
    if {"random", "epistemic"} <= set(by) and args.labels >= 10:
        gap = by["epistemic"][10].dev_dice - by["random"][10].dev_dice
        lines.append(f"epistemic - random at 10 labels: {gap:+.3f} Dice")
    text = "\n".join(lines)
    plot(by, args, save_report(args.out, name, text, [asdict(s) for s in steps]))


def plot(by: dict[str, dict[int, Step]], args: argparse.Namespace, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (dice_ax, effort_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for strategy, at in by.items():
        rounds = [at[n] for n in sorted(at) if n > 0]
        dice_ax.plot(sorted(at), [at[n].dev_dice for n in sorted(at)], marker="o", label=strategy)
        effort_ax.plot([x.labels for x in rounds], [x.effort for x in rounds], marker="o", label=strategy)
    dice_ax.set(xlabel="labelled cases", ylabel="mean Dice on held-out dev cases", ylim=(0, 1))
    effort_ax.set(xlabel="case number", ylabel="effort: changed voxels / tumour voxels")
    effort_ax.set_yscale("symlog", linthresh=1.0)  # an early model can mark many times the tumour's volume
    dice_ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    for ax in (dice_ax, effort_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Simulated annotation campaign, STS {args.modality}, rounds of {round_budget(args)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
