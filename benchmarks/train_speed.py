"""Training speed, and one Auto-Update round through the real server: how long, and does it already help?

1. **Throughput.** The app's trainer (``lib/trainers``) runs two epochs of each network (segmentation, then clicks)
   on the 15 non-dev STS CT cases, on the CPU and, when there is one, on the GPU. It reports samples per second
   (training iterations only) and seconds per epoch (validation included), from the run's own stats.
2. **Auto-Update round.** A real server with the default configuration gets 5 labels and one training run (the
   state after a first session), then one more label and the training request that 3D Slicer's Auto-Update sends
   after a submit. It reports the round's wall time (submit to both networks published) and the mean Dice of
   the pre-segmentation on the 5 dev cases before and after the round.

Usage: ``.venv/bin/python -m benchmarks.train_speed [--skip-throughput] [--skip-round] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from monailabel.client import MONAILabelClient

from benchmarks.common import MASK, STS, labelled_studies, read_mask, split_cases
from benchmarks.report import save_report
from lib.config import parse_config
from tests.support.annotator import dice
from tests.support.server import APP, ROOT, start_server, stop_server, wait_until_up

FIRST_LABELS = 5


def throughput(device: str, pool: list[str], data: str, tmp: str) -> list[dict]:
    """Two epochs of each network with the app's trainer; figures from the run's stats."""
    from lib.datastore import TumorDatastore
    from lib.trainers import TrainingRun

    studies = labelled_studies(os.path.join(tmp, f"throughput-{device}"), data, pool, pool)
    conf = {
        "device": device,
        "model_dir": os.path.join(tmp, f"model-{device}"),
        "epochs": "2",
        "click_epochs": "2",
        "checkpoint": "none",
    }
    config = parse_config(conf, APP)
    result = TrainingRun(config)({"train_minutes": 600}, TumorDatastore(studies, config))
    rows = []
    for model, stats in result["networks"].items():
        samples = stats["cases"]["train"] * config.samples_per_case
        rows.append(
            {
                "device": device,
                "network": model,
                "train cases": stats["cases"]["train"],
                "samples/s": samples / stats["train_seconds_per_epoch"],
                "s/epoch": stats["seconds_per_epoch"],
                "patch": "x".join(map(str, config.patch_size)),
            }
        )
    return rows


def wait_for_run(client: MONAILabelClient, task_id: str, deadline_s: float = 3600) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = client.train_status()
        if status and status.get("id") == task_id and status["status"] in ("DONE", "ERROR", "STOPPED"):
            return status
        time.sleep(2)
    raise TimeoutError("training did not end")


def dev_dice(client: MONAILabelClient, dev: list[str], data: str) -> dict[str, float]:
    scores = {}
    for case in dev:
        path, _ = client.infer("segmentation", case, {"result_extension": ".nii.gz"})
        scores[case] = dice(read_mask(path), read_mask(os.path.join(data, case, MASK)))
        os.remove(path)
    return scores


def auto_update_round(pool: list[str], dev: list[str], data: str, tmp: str, first_epochs: int | None = None) -> dict:
    first, submitted = pool[:FIRST_LABELS], pool[FIRST_LABELS]
    studies = labelled_studies(os.path.join(tmp, "round"), data, pool + dev, first)
    # Untrained at first: the shipped CT model has seen the dev cases.
    conf = {"model_dir": os.path.join(tmp, "model-round"), "checkpoint": "none"}
    process, url = start_server(APP, studies, conf, os.path.join(tmp, "round.log"))
    try:
        wait_until_up(process, url, deadline_s=300)
        client = MONAILabelClient(url, tmpdir=tmp)
        first = {"max_epochs": first_epochs} if first_epochs else {}  # the session before the round: not timed
        status = wait_for_run(client, client.train_start("segmentation", first)["id"])
        if status["status"] != "DONE":
            raise RuntimeError(f"the first training run ended {status['status']}")
        before = dev_dice(client, dev, data)

        start = time.perf_counter()
        client.save_label(submitted, os.path.join(data, submitted, MASK))
        task = client.train_start("segmentation", {})  # what Auto-Update sends after a submit
        status = wait_for_run(client, task["id"])
        round_s = time.perf_counter() - start
        stats = client.info()["train_stats"]["segmentation"]
        after = dev_dice(client, dev, data)
    finally:
        stop_server(process)
    return {
        "status": status["status"],
        "round_s": round_s,
        "epochs": {name: network["epoch"] for name, network in stats.get("networks", {}).items()},
        "train_minutes": parse_config(conf, APP).train_minutes,
        "dev_before": before,
        "dev_after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=STS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-round", action="store_true")
    parser.add_argument("--devices", default="cpu,cuda", help="throughput on these (cuda where there is one)")
    parser.add_argument("--first-epochs", type=int, help="max_epochs of the untimed run before the round")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"no STS data at {args.data}: this benchmark needs ../shared/data/sts")
    os.makedirs(args.out, exist_ok=True)
    pool, dev = split_cases(args.data)

    rows: list[dict] = []
    round_result = None
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_throughput:
            wanted = args.devices.split(",")
            devices = [d for d in wanted if d != "cuda" or torch.cuda.is_available()]
            if len(devices) < len(wanted):
                print("No CUDA device: the GPU throughput is skipped.")
            for device in devices:
                rows += throughput(device, pool, args.data, tmp)
        if not args.skip_round:
            round_result = auto_update_round(pool, dev, args.data, tmp, args.first_epochs)
    report(rows, round_result, args)


def report(rows: list[dict], round_result: dict | None, args: argparse.Namespace) -> None:
    lines = [f"Training speed, STS CT; {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}", ""]
    if rows:
        lines.append(f"{'device':<8}{'network':<14}{'train cases':>12}{'patch':>10}{'samples/s':>11}{'s/epoch':>9}")
        for r in rows:
            lines.append(
                f"{r['device']:<8}{r['network']:<14}{r['train cases']:>12}{r['patch']:>10}"
                f"{r['samples/s']:>11.2f}{r['s/epoch']:>9.1f}"
            )
        lines.append("")
    if round_result:
        before = statistics.mean(round_result["dev_before"].values())
        after = statistics.mean(round_result["dev_after"].values())
        device = "cuda" if torch.cuda.is_available() else "CPU"
        lines += [
            f"Auto-Update round on {device} (default configuration, train_minutes {round_result['train_minutes']:g}): "
            f"{FIRST_LABELS} labels trained, then label {FIRST_LABELS + 1} submitted and one round run",
            f"round wall time {round_result['round_s']:.0f} s ({round_result['status']}; epochs "
            f"{round_result['epochs']})",
            f"dev Dice before {before:.3f} -> after {after:.3f} ({after - before:+.3f})",
            "per dev case: "
            + ", ".join(
                f"{c} {round_result['dev_before'][c]:.2f}->{round_result['dev_after'][c]:.2f}"
                for c in round_result["dev_before"]
            ),
        ]
    text = "\n".join(lines)
    path = save_report(args.out, "train_speed", text, {"throughput": rows, "auto_update_round": round_result})
    if rows:
        plot(rows, path)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    names = [f"{r['device']} {r['network']}" for r in rows]
    ax.barh(names, [r["samples/s"] for r in rows], color=plt.cm.tab10.colors[: len(rows)])
    ax.set_xlabel(f"training samples per second ({rows[0]['patch']} patches)")
    ax.set_title("Training throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
