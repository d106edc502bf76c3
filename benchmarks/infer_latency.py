"""End-to-end auto-segmentation latency through the real server on the sample-data cases.

Starts ``monailabel start_server --app apps/tumor`` on a copy of ``sample-data/`` with weights of the default
architecture (random initialisation: latency does not depend on the weight values), sends each case through
``MONAILabelClient.infer`` as 3D Slicer does, and prints client wall time and the server's stage latencies.

Usage: ``.venv/bin/python -m benchmarks.infer_latency [--repeats 3] [--conf key value ...]``
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import statistics
import tempfile
import time

import SimpleITK as sitk
from monailabel.client import MONAILabelClient

from benchmarks.server import APP, start_server, stop_server, wait_until_up
from lib.checkpoint import publish_checkpoint
from lib.config import parse_config
from lib.networks import build_network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per case (after one warm-up)")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        studies = os.path.join(tmp, "studies")
        os.makedirs(studies)
        cases = sorted(glob.glob(os.path.join(ROOT, "sample-data", "*.nii.gz")))
        for path in cases:
            shutil.copy(path, studies)
        conf = {"model_dir": os.path.join(tmp, "model"), "device": "cpu", **dict(args.conf)}
        config = parse_config(conf, os.path.join(ROOT, "apps", "tumor"))
        publish_checkpoint(build_network(config).state_dict(), {"run_id": "benchmark"}, config.published_path(), config)

        process, url = start_server(APP, studies, conf, os.path.join(tmp, "server.log"))
        try:
            wait_until_up(process, url)
            client = MONAILabelClient(url, tmpdir=tmp)
            rows = []
            for path in cases:
                case = os.path.basename(path).replace(".nii.gz", "")
                client.infer("segmentation", case, {"result_extension": ".nrrd"})  # warm-up (model load)
                walls, stages = [], []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    _, params = client.infer("segmentation", case, {"result_extension": ".nrrd"})
                    walls.append(time.perf_counter() - start)
                    stages.append(params["latencies"])
                size = "x".join(map(str, sitk.ReadImage(path).GetSize()))
                median = {k: statistics.median(s[k] for s in stages) for k in ("pre", "infer", "post", "write")}
                rows.append((case, size, statistics.median(walls), median))
        finally:
            stop_server(process)

    print(
        f"\nnetwork={config.network} features={config.features} spacing={config.spacing} patch={config.patch_size} "
        f"device=cpu torch_threads={os.cpu_count()} repeats={args.repeats} (median)"
    )
    print(f"{'case':<10}{'size':>14}{'end-to-end s':>14}{'pre s':>8}{'network s':>11}{'post s':>8}{'write s':>9}")
    for case, size, wall, m in rows:
        print(
            f"{case:<10}{size:>14}{wall:>14.2f}{m['pre']:>8.2f}{m['infer']:>11.2f}{m['post']:>8.2f}{m['write']:>9.2f}"
        )


if __name__ == "__main__":
    main()
