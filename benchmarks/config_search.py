"""Which configuration learns the most in a fixed CPU time? Dev Dice after one time-bounded training run.

For each candidate (``--candidate key=value,key=value``; the default configuration when none is given), the app's
trainer runs on the 15 non-dev STS cases for ``--train-minutes`` and the app's inference segments the 5 dev cases
(``benchmarks.campaign.split_cases``). Prints epochs, dev Dice and inference seconds per candidate, and writes a
bar plot. This is how the default network width, grid spacing and learning rate were chosen for CPU servers.

Usage: ``.venv/bin/python -m benchmarks.config_search [--modality CT] [--train-minutes 6]
--candidate "features=8,spacing=2,2,4,learning_rate=1e-3" --candidate "features=16,spacing=1.5,1.5,3"``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from benchmarks.common import FILES, STS, labelled_studies, read_mask, split_cases
from benchmarks.report import save_report
from tests.support.annotator import dice
from tests.support.server import APP, ROOT


def parse_candidate(text: str) -> dict[str, str]:
    """``"features=8,spacing=2,2,4"`` -> ``{"features": "8", "spacing": "2,2,4"}`` (commas inside values kept)."""
    conf: dict[str, str] = {}
    key = None
    for part in text.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            conf[key.strip()] = value.strip()
        elif key is not None:
            conf[key] += "," + part.strip()
        else:
            raise ValueError(f"candidate {text!r}: expected key=value pairs")
    return conf


def evaluate(conf: dict[str, str], args: argparse.Namespace, tmp: str) -> dict:
    from lib.config import parse_config
    from lib.datastore import TumorDatastore
    from lib.infers import SegmentationInfer
    from lib.trainers import TrainingRun

    image_name, mask_name = FILES[args.modality]
    pool, dev = split_cases(args.data)
    folder = tempfile.mkdtemp(dir=tmp)
    studies = labelled_studies(os.path.join(folder, "studies"), args.data, pool, pool, image_name, mask_name)
    full = {
        "modality": args.modality.lower(),
        "checkpoint": "none",
        "click_epochs": "0",
        "epochs": "1000",
        "train_minutes": str(args.train_minutes),
        "device": "cpu",
        **conf,
        "model_dir": os.path.join(folder, "model"),
    }
    config = parse_config(full, APP)
    stats = TrainingRun(config)({}, TumorDatastore(studies, config))
    infer = SegmentationInfer(config)
    scores, seconds = {}, []
    for case in dev:
        start = time.perf_counter()
        path, _ = infer({"image": os.path.join(args.data, case, image_name), "result_extension": ".nii.gz"})
        seconds.append(time.perf_counter() - start)
        scores[case] = dice(read_mask(path), read_mask(os.path.join(args.data, case, mask_name)))
        os.remove(path)
    return {
        "candidate": conf,
        "epochs": stats["networks"]["segmentation"]["epoch"],
        "val_dice": stats["best_metric"],
        "dev_dice": statistics.mean(scores.values()),
        "dev_dice_per_case": scores,
        "infer_s": statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=STS)
    parser.add_argument("--modality", choices=sorted(FILES), default="CT")
    parser.add_argument("--train-minutes", type=float, default=6.0)
    parser.add_argument("--candidate", action="append", default=[], help="key=value,... (--conf keys)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"no STS data at {args.data}: this benchmark needs ../shared/data/sts")
    os.makedirs(args.out, exist_ok=True)
    candidates = [parse_candidate(c) for c in args.candidate] or [{}]
    with tempfile.TemporaryDirectory() as tmp:
        results = [evaluate(c, args, tmp) for c in candidates]

    lines = [
        f"Dev Dice after one {args.train_minutes:g}-minute training run from scratch, STS {args.modality}, "
        f"15 training cases, 5 dev cases; {os.cpu_count()} CPU cores",
        "",
        f"{'candidate':<60}{'epochs':>7}{'val Dice':>9}{'dev Dice':>9}{'infer s':>8}",
    ]
    for r in results:
        name = ", ".join(f"{k}={v}" for k, v in r["candidate"].items()) or "defaults"
        lines.append(f"{name:<60}{r['epochs']:>7}{r['val_dice']:>9.3f}{r['dev_dice']:>9.3f}{r['infer_s']:>8.2f}")
    text = "\n".join(lines)
    plot(results, save_report(args.out, f"config_search_{args.modality.lower()}", text, results))


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(results) + 1.5))
    names = ["\n".join(f"{k}={v}" for k, v in r["candidate"].items()) or "defaults" for r in results]
    ax.barh(names, [r["dev_dice"] for r in results])
    ax.set(xlabel="mean dev Dice", xlim=(0, 1), title="Dev Dice after one time-bounded training run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
