"""k-fold cross-validation of the training recipe on a labelled studies folder, with the app's own code.

Every case is tested exactly once, by the model of the fold that did not train on it; within a fold the run holds
out its own validation cases to choose its epoch, so no test case chooses its own epoch. Each fold trains with
:class:`TrainingRun` (segmentation network only, from scratch unless ``--conf checkpoint`` names a start), and its
test cases are segmented with the served inference path (:class:`SegmentationInfer`, on each image's own grid)
and scored with :mod:`lib.evaluation.metrics`. The folds' checkpoints are kept (``fold<i>.pt``, with the training
record ``fold<i>.pt.json``), and so are their scores (``fold<i>.test.json``: recipe, training and test cases, and one
row per test case and label), which are small enough to commit: a run resumed in a later sitting, even on a machine
that no longer holds the weights, reuses them instead of training the fold again.

Usage::

    .venv/bin/python -m lib.trainers.crossval --studies FOLDER --out DIR [--folds 5] [--conf train_minutes 10] ...
    .venv/bin/python -m lib.trainers.crossval --studies FOLDER --out DIR --trained CV1 [CV2 ...]  # score, as ensemble
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from typing import Any

from lib.atomic import write_json
from lib.checkpoint import read_checkpoint
from lib.config import APP_DIR, parse_config
from lib.evaluation.cases import volumes
from lib.evaluation.metrics import label_metrics
from lib.infers import SegmentationInfer
from lib.trainers.ensemble import combine
from lib.trainers.offline import offline_config, train_offline
from lib.transforms.volume_io import read_volume

logger = logging.getLogger(__name__)


def assign_folds(cases: list[str], folds: int) -> dict[str, int]:
    """Case -> fold, stable and balanced: cases ordered by the hash of their name, dealt out in turn."""
    if not 2 <= folds <= len(cases):
        raise ValueError(f"{folds} folds need between 2 and {len(cases)} (the labelled cases)")
    ordered = sorted(cases, key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    return {case: i % folds for i, case in enumerate(ordered)}


def labelled_cases(studies: str) -> dict[str, tuple[str, str]]:
    """Case -> (image, final label) of every labelled image of ``studies``."""
    images, labels = volumes(studies), volumes(os.path.join(studies, "labels", "final"))
    cases = {case: (images[case], labels[case]) for case in sorted(set(images) & set(labels))}
    if not cases:
        raise ValueError(f"no image of {studies} has a label in labels/final")
    return cases


def _fold_studies(folder: str, cases: dict[str, tuple[str, str]]) -> str:
    final = os.path.join(folder, "labels", "final")
    os.makedirs(final)
    for image, label in cases.values():
        os.symlink(os.path.abspath(image), os.path.join(folder, os.path.basename(image)))
        os.symlink(os.path.abspath(label), os.path.join(final, os.path.basename(label)))
    return folder


def trained_fold(checkpoint: str, conf: dict[str, str], train: dict[str, tuple[str, str]]) -> dict[str, Any] | None:
    """The training stats of ``checkpoint`` when an earlier run trained it under ``conf`` on exactly ``train``'s
    images (its record ``<checkpoint>.json`` and its metadata say so); None when there is no such file.

    Raises:
        ValueError: the file exists but was trained otherwise, so reusing it would mix two recipes.
    """
    record = f"{checkpoint}.json"
    if not (os.path.isfile(checkpoint) and os.path.isfile(record)):
        return None
    with open(record) as f:
        trained_with = json.load(f)
    with tempfile.TemporaryDirectory() as model_dir:
        plan = offline_config(conf, model_dir).plan  # the plan the fold trained under (train_offline's)
    _, meta = read_checkpoint(checkpoint, plan)
    seen = set(meta.get("trained_on", [])) | set(meta.get("validated_on", []))
    expected = {os.path.basename(image) for image, _ in train.values()}
    if trained_with.get("conf") != conf or seen != expected:
        raise ValueError(
            f"{checkpoint} was trained with --conf {trained_with.get('conf')} on {len(seen)} cases, not with "
            f"{conf} on this fold's {len(expected)}: remove it or write to another --out"
        )
    return dict(trained_with["stats"])


def scored_fold(
    path: str, conf: dict[str, str], train: list[str], test: list[str], seed: int | None = None
) -> dict[str, Any] | None:
    """The scores ``path`` (a ``fold<i>.test.json``) holds when an earlier run of this recipe (and ``seed``) trained
    on exactly ``train`` and tested on ``test`` (case names); None when there is no such file.

    Raises:
        ValueError: the file exists but holds another recipe or other cases, so reusing it would mix two runs.
    """
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        scored = json.load(f)
    same_cases = scored.get("train") == sorted(train) and scored.get("test") == sorted(test)
    if scored.get("conf") != conf or scored.get("seed") != seed or not same_cases:
        raise ValueError(
            f"{path} holds the scores of --conf {scored.get('conf')} (seed {scored.get('seed')}) trained on "
            f"{len(scored.get('train', []))} cases, not of {conf} (seed {seed}) on this fold's {len(train)}: "
            "remove it or write to another --out"
        )
    return scored


def _minutes(elapsed: str) -> float:
    """Minutes of a run's ``total_time`` (``str`` of a ``timedelta``: ``H:MM:SS`` or ``N day(s), H:MM:SS``)."""
    days, _, clock = elapsed.rpartition(", ")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return (int(days.split()[0]) if days else 0) * 1440 + hours * 60 + minutes + seconds / 60


def cross_validate(
    studies: str,
    out: str,
    folds: int,
    conf: dict[str, str],
    trained: str | list[str] | None = None,
    resume: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """Train ``folds`` models and score every case with the one that did not see it; writes ``crossval.json``.

    Args:
        trained: a folder of an earlier cross-validation (same studies and folds): its ``fold<i>.pt`` are used
            instead of training, to compare inference settings (``--conf tta mirror``...) on the same models.
            Several folders: each fold's models from all of them segment as one ensemble, their softmax outputs
            averaged (combined into one ensemble checkpoint, :mod:`lib.trainers.ensemble`, and served as the app
            serves it).
        resume: reuse the folds an interrupted run of this cross-validation (same ``out``, ``conf`` and cases)
            finished (:func:`trained_fold`), and train the others; long runs can span several sittings.
        seed: fold ``i`` trains with ``seed + i`` (:func:`train_offline`), so the run can be repeated; without it,
            each fold's weights and patches are drawn afresh, and a rerun scores differently.
    """
    members = [trained] if isinstance(trained, str) else list(trained or [])
    cases = labelled_cases(studies)
    fold_of = assign_folds(list(cases), folds)
    os.makedirs(out, exist_ok=True)
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for fold in range(folds):
        test = {c: p for c, p in cases.items() if fold_of[c] == fold}
        train = {c: p for c, p in cases.items() if fold_of[c] != fold}
        checkpoints = [os.path.join(folder, f"fold{fold}.pt") for folder in members or [out]]
        checkpoint = checkpoints[0]
        scores = os.path.join(out, f"fold{fold}.test.json")
        scored = scored_fold(scores, conf, list(train), list(test), seed) if resume and not members else None
        if scored is not None:
            logger.info("Fold %d: reusing the scores in %s, from an earlier sitting with this recipe", fold, scores)
            rows += scored["rows"]
            runs.append({"fold": fold, "test": sorted(test), "minutes": scored["minutes"], "stats": scored["stats"]})
            continue
        fold_rows: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix=f"fold{fold}-") as tmp:
            start = time.time()
            earlier = trained_fold(checkpoint, conf, train) if resume and not members else None
            if members:
                missing = [path for path in checkpoints if not os.path.isfile(path)]
                if missing:  # e.g. weights that stayed on another machine: only their scores were committed
                    raise ValueError(f"fold {fold}'s models to evaluate are missing: {', '.join(missing)}")
                stats = {"trained": checkpoint if len(checkpoints) == 1 else checkpoints}
            elif earlier is not None:
                logger.info("Fold %d: reusing %s, trained earlier with this recipe on this fold", fold, checkpoint)
                stats = earlier
            else:
                fold_seed = None if seed is None else seed + fold
                stats = train_offline(_fold_studies(os.path.join(tmp, "studies"), train), checkpoint, conf, fold_seed)
            minutes = _minutes(earlier["total_time"]) if earlier is not None else (time.time() - start) / 60
            runs.append({"fold": fold, "test": sorted(test), "minutes": minutes, "stats": stats})
            if len(checkpoints) > 1:
                checkpoint = os.path.join(tmp, "ensemble.pt")
                combine(checkpoints, offline_config(conf, tmp).plan, checkpoint)  # the members' plan
            app_config = parse_config({**conf, "checkpoint": checkpoint, "model_dir": os.path.join(tmp, "m")}, APP_DIR)
            infer = SegmentationInfer(app_config)
            for case, (image, label) in test.items():
                path, _ = infer({"image": image, "result_extension": ".nii.gz"})
                truth, geometry = read_volume(label)
                pred, _ = read_volume(path)
                os.remove(path)
                for value, name in enumerate(app_config.plan.labels, start=1):
                    metrics = label_metrics(truth[0] == value, pred[0] == value, geometry.spacing)
                    fold_rows.append({"fold": fold, "case": case, "label": name, **metrics.as_dict()})
        rows += fold_rows
        record = {"conf": conf, "seed": seed, "train": sorted(train), "test": sorted(test)}
        record |= {"minutes": minutes, "stats": stats, "rows": fold_rows}
        write_json(scores, record)  # atomic: a crash never leaves half a record to reuse
        fold_dice = [r["dice"] for r in rows if r["fold"] == fold]
        logger.info(
            "Fold %d: test Dice %s (mean %.3f)", fold, [round(d, 3) for d in fold_dice], statistics.fmean(fold_dice)
        )
    dice = [r["dice"] for r in rows]
    result = {
        "conf": conf,
        "seed": seed,
        "folds": folds,
        "mean_dice": statistics.fmean(dice),
        "median_dice": statistics.median(dice),
        "fold_mean_dice": [statistics.fmean([r["dice"] for r in rows if r["fold"] == f]) for f in range(folds)],
        "cases": rows,
        "runs": runs,
    }
    with open(os.path.join(out, "crossval.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", required=True, help="folder of images with labels/final/")
    parser.add_argument("--out", required=True, help="folder for the folds' checkpoints and crossval.json")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument(
        "--trained",
        nargs="+",
        help="earlier cross-validations' folders: evaluate their fold models (several: as one ensemble)",
    )
    parser.add_argument("--resume", action="store_true", help="reuse the folds an interrupted run finished in --out")
    parser.add_argument("--seed", type=int, help="fold i trains with seed + i: a repeatable run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = cross_validate(args.studies, args.out, args.folds, dict(args.conf), args.trained, args.resume, args.seed)
    for row in result["cases"]:
        print(f"fold {row['fold']}  {row['case']:<12} {row['label']:<10} Dice {row['dice']:.3f}")
    print(
        f"mean Dice {result['mean_dice']:.3f}, median {result['median_dice']:.3f}; per fold {result['fold_mean_dice']}"
    )


if __name__ == "__main__":
    main()
