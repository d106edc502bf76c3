"""Auto-segmentation latency while the server's background jobs (start-up scoring, a training run) share the CPU.

An annotator asks for the next pre-segmentation while the server trains on their last corrections (Train or
Auto-Update). On the real server with the default configuration (the shipped CT model, both networks trained in
each run) and 8 labelled STS CT cases, once for each ``--niceness`` (``background_niceness``: how much lower the
training process's CPU priority is than the server's):

0. **during start-up scoring**: right after start-up, while the scoring job ranks the unlabelled cases, a request
   for STS_004 every ``--gap`` seconds (the first one also loads the network);
1. **idle**: after a warm-up, ``--repeats`` requests for STS_004 (the voxel count of the issue's 189x210x67 case);
2. **during training**: a training run of ``--train-minutes`` starts, and the client asks for STS_004 every
   ``--gap`` seconds (an annotator's pace, not a load test) until the run has ended;
3. **training alone**: a second run of the same length with no requests, for the training's own slowdown.

Reports the latency (median, 90th percentile, max) idle and during training, and the training's seconds per
epoch of each network with and without the requests. Plot: latency against time since the run started.

Usage: ``.venv/bin/python -m benchmarks.infer_while_training [--niceness 0 10] [--train-minutes 1] [--gap 3]
[--repeats 5] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import requests
from monailabel.client import MONAILabelClient

from benchmarks.common import STS, labelled_studies, require_data, split_cases, wait_for_scoring
from benchmarks.report import save_report
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION
from tests.support.server import APP, ROOT, start_server, stop_server, wait_until_up

CASE = "STS_004"
LABELLED = 8
PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}  # as 3D Slicer asks


def request_once(client: MONAILabelClient) -> float:
    start = time.perf_counter()
    path, _ = client.infer(SEGMENTATION.served_as, CASE, PARAMS)
    latency = time.perf_counter() - start
    os.remove(path)
    return latency


def run_ended(client: MONAILabelClient, task_id: str) -> dict | None:
    status = client.train_status()
    done = status and status.get("id") == task_id and status["status"] in ("DONE", "ERROR", "STOPPED")
    return status if done else None


def train(client: MONAILabelClient, minutes: float, gap: float | None) -> tuple[list[tuple[float, float]], dict]:
    """One training run; with ``gap``, a request every ``gap`` seconds while it runs (each sent after checking
    that the run had not ended). Returns the (time since the run started, latency) of each request and the run's
    stats of both networks."""
    task = client.train_start(SEGMENTATION.name, {"train_minutes": minutes})
    start = time.perf_counter()
    requests: list[tuple[float, float]] = []
    while (status := run_ended(client, task["id"])) is None:
        if gap is None:
            time.sleep(2)
            continue
        sent = time.perf_counter()
        requests.append((sent - start, request_once(client)))
        time.sleep(max(0.0, gap - (time.perf_counter() - sent)))
    if status["status"] != "DONE":
        raise RuntimeError(f"the training run ended {status['status']}")
    return requests, client.info()["train_stats"][SEGMENTATION.name]


def scoring_running(url: str) -> bool:
    return requests.get(f"{url}/scoring/", params={"check_if_running": "true"}, timeout=10).status_code == 200


def during_scoring(client: MONAILabelClient, url: str, gap: float) -> list[tuple[float, float]]:
    """A request every ``gap`` seconds while the start-up scoring job runs (waiting up to 30 s for it to start)."""
    deadline = time.perf_counter() + 30
    while not scoring_running(url):
        if time.perf_counter() > deadline:
            raise RuntimeError("the start-up scoring job did not start")
        time.sleep(0.2)
    start = time.perf_counter()
    latencies: list[tuple[float, float]] = []
    while scoring_running(url):
        sent = time.perf_counter()
        latencies.append((sent - start, request_once(client)))
        time.sleep(max(0.0, gap - (time.perf_counter() - sent)))
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "median_s": statistics.median(latencies),
        "p90_s": float(np.percentile(latencies, 90)),
        "max_s": max(latencies),
    }


def epochs_of(stats: dict) -> dict[str, float | None]:
    networks = stats.get("networks", {})
    return {n.name: networks.get(n.name, {}).get("seconds_per_epoch") for n in (SEGMENTATION, CLICK_NETWORK)}


def measure(niceness: int, pool: list[str], labelled: list[str], args: argparse.Namespace, tmp: str) -> dict:
    """Idle, during-training and training-alone figures on a fresh server with ``background_niceness``."""
    folder = os.path.join(tmp, f"niceness-{niceness}")
    studies = labelled_studies(os.path.join(folder, "studies"), STS, [*pool, CASE], labelled)
    conf = {"model_dir": os.path.join(folder, "model"), "background_niceness": str(niceness)}
    process, url = start_server(APP, studies, conf, os.path.join(folder, "server.log"))
    try:
        wait_until_up(process, url, deadline_s=300)
        client = MONAILabelClient(url, tmpdir=folder)
        scoring = during_scoring(client, url, args.gap)
        wait_for_scoring(url)
        request_once(client)  # warm-up
        idle = [request_once(client) for _ in range(args.repeats)]
        during, shared_stats = train(client, args.train_minutes, args.gap)
        wait_for_scoring(url)  # the run's scoring job, so the next run trains alone
        _, alone_stats = train(client, args.train_minutes, None)
    finally:
        stop_server(process)
    return {
        "niceness": niceness,
        "training_process_niceness": shared_stats.get("niceness"),
        "idle": {**summary(idle), "runs": idle},
        "during_scoring": {**summary([r[1] for r in scoring]), "runs": scoring},
        "during_training": {**summary([r[1] for r in during]), "runs": during},
        "seconds_per_epoch": {"with requests": epochs_of(shared_stats), "alone": epochs_of(alone_stats)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--niceness", type=int, nargs="+", default=[0, 10], help="background_niceness values")
    parser.add_argument("--train-minutes", type=float, default=1.0)
    parser.add_argument("--gap", type=float, default=3.0, help="seconds from one request to the next")
    parser.add_argument("--repeats", type=int, default=5, help="idle requests after the warm-up")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    require_data(STS)
    os.makedirs(args.out, exist_ok=True)
    pool, _ = split_cases(STS)
    labelled = [c for c in pool if c != CASE][:LABELLED]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(niceness, [c for c in pool if c != CASE], labelled, args, tmp) for niceness in args.niceness]
    result = {"case": CASE, "labelled": labelled, "train_minutes": args.train_minutes, "gap_s": args.gap, "runs": runs}
    report(result, args)


def report(result: dict, args: argparse.Namespace) -> None:
    lines = [
        f"Auto segmentation of {CASE} while a {args.train_minutes:g}-minute training run (both networks, "
        f"{LABELLED} labelled STS CT cases), or the start-up scoring of the unlabelled cases, shares "
        f"{os.cpu_count()} CPU cores; a request every {args.gap:g} s",
        "",
        f"{'niceness':>8}  {'latency':<16}{'requests':>9}{'median s':>10}{'p90 s':>8}{'max s':>8}"
        f"{'vs idle':>9}   {'train s/epoch: seg, clicks':<28}",
    ]
    for run in result["runs"]:
        idle = run["idle"]["median_s"]
        epochs = run["seconds_per_epoch"]
        phases = (
            ("during scoring", "during_scoring", None),
            ("idle", "idle", "alone"),
            ("during training", "during_training", "with requests"),
        )
        for name, key, trained in phases:
            s = run[key]
            if trained is None:
                lines.append(
                    f"{run['niceness']:>8}  {name:<16}{s['requests']:>9}{s['median_s']:>10.2f}{s['p90_s']:>8.2f}"
                    f"{s['max_s']:>8.2f}{s['median_s'] / idle:>8.1f}x"
                )
                continue
            lines.append(
                f"{run['niceness']:>8}  {name:<16}{s['requests']:>9}{s['median_s']:>10.2f}{s['p90_s']:>8.2f}"
                f"{s['max_s']:>8.2f}{s['median_s'] / idle:>8.1f}x   "
                f"{trained + ':':<15}{_s(epochs[trained][SEGMENTATION.name])}, "
                f"{_s(epochs[trained][CLICK_NETWORK.name])}"
            )
    text = "\n".join(lines)
    plot(result, save_report(args.out, "infer_while_training", text, result))


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for run, colour in zip(result["runs"], plt.cm.tab10.colors):
        if run["during_scoring"]["runs"]:
            times, latencies = zip(*run["during_scoring"]["runs"])
            ax.plot(times, latencies, "x:", color=colour, label=f"during start-up scoring, niceness {run['niceness']}")
        if run["during_training"]["runs"]:
            times, latencies = zip(*run["during_training"]["runs"])
            ax.plot(times, latencies, "o-", color=colour, label=f"during training, niceness {run['niceness']}")
        ax.axhline(run["idle"]["median_s"], color=colour, linestyle="--", label=f"idle, niceness {run['niceness']}")
    ax.set(xlabel="seconds since the job started", ylabel="end-to-end latency, s", ylim=(0, None))
    ax.set_title(f"Auto segmentation of {result['case']} while training runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
