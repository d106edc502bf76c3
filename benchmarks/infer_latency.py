"""Auto-segmentation latency end to end through the real server, ours against stock MONAI Label.

For each case, a client request goes to ``/infer/segmentation`` as 3D Slicer sends it, and the label file comes back
(``MONAILabelClient.infer``). The table splits the server's time into load, preprocess, network, postprocess and
write (its own per-stage latencies), reports what is left (HTTP, request handling) as "other", and the peak
resident memory of the server process during the request. The same cases then go to the stock radiology sample
app's ``segmentation`` model (SegResNet, 96^3 windows, untrained offline) and the table gives stock / ours.

Cases: STS sarcoma CT (``../shared/data/sts``) and the 4-sequence BraTS case (``../shared/data/brats_unlabeled``,
stacked into one 4D image; our app runs with ``channels 4``, stock gets its FLAIR alone because its model takes
one channel). STS_001 also comes as a DICOM CT series from a real Orthanc PACS over DICOMweb (``ours dicom``;
skipped where Orthanc is not installed). The BraTS case runs a second time as its four files (``--conf sequences
t1n,t1c,t2w,t2f``), which the server reads and stacks on every request. The table also gives the first request to
each server (it loads the network), before the timed ones. Ours serves what it would serve a new user: the shipped
CT model for CT, and for the 4-channel case randomly initialised weights (latency does not depend on the weight
values). Every request is timed after the server's start-up scoring has finished, so it has the machine to itself,
and after one warm-up request.

With a CUDA device, the same cases run again on it (``--conf device cuda``, AMP); without one that part is skipped
with a message.

Usage: ``.venv/bin/python -m benchmarks.infer_latency [--cases STS_001 ...] [--repeats 3] [--stock-repeats 2]
[--no-stock] [--keep-largest auto|on|off] [--conf KEY VALUE ...] [--name NAME] [--out benchmarks/results]``.
``--keep-largest on`` times our largest-component post-processing on every case (the shipped model, validated
before it existed, has none). ``--conf`` configures every server of ours, e.g. a candidate network (``--conf
features 16 --conf ensemble 2``: random weights of that plan when nothing fits it); ``--name`` keeps its results
apart (``infer_latency_<name>.*``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

import nibabel as nib
import numpy as np
import psutil
import SimpleITK as sitk
import torch
from monailabel.client import MONAILabelClient

from benchmarks.common import DATA, require_data, wait_for_scoring
from benchmarks.report import save_report
from lib.checkpoint import Weights, publish, serving_checkpoint
from lib.config import parse_config
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from tests.support import orthanc
from tests.support.server import APP, ROOT, STOCK_APP, start_server, stop_server, wait_until_up

STOCK_CONF = {"models": "segmentation", "use_pretrained_model": "false", "sam2": "false", "labels": "tumor"}
# STS_004 (173x183x85) has the voxel count of the 189x210x67 case; STS_022 is the largest, STS_019 the
# smallest, STS_001 the DICOM one.
DEFAULT_CASES = ("STS_001", "STS_004", "STS_019", "STS_022")
BRATS = "BraTS-GLI-00001-000"
BRATS_SEQUENCES = ("t1n", "t1c", "t2w", "t2f")
STAGES = ("load", "pre", "network", "post", "write", "other")


@dataclass
class Timing:
    """Medians over the timed requests of one case on one server."""

    case: str
    size: str
    server: str
    end_to_end: float
    stages: dict[str, float]
    peak_rss_mb: float
    runs: list[float] = field(default_factory=list)
    first: float = 0.0  # the first request to the server: the network is loaded then

    @property
    def outside_network(self) -> float:
        return 1.0 - self.stages["network"] / self.end_to_end


class PeakMemory:
    """Peak resident memory of a process and its children, sampled every 10 ms while in the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        total = 0
        for p in [self.process, *self.process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __enter__(self) -> PeakMemory:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stack_brats(folder: str, path: str) -> str:
    """The four BraTS sequences as one 4D NIfTI (last axis = channels), the form our app takes."""
    images = [nib.load(os.path.join(folder, f"{BRATS}-{s}.nii.gz")) for s in BRATS_SEQUENCES]
    data = np.stack([np.asarray(i.dataobj) for i in images], axis=-1)  # their own dtype (int16)
    nib.save(nib.Nifti1Image(data, images[0].affine), path)
    return path


def time_case(
    client: MONAILabelClient, pid: int, case: str, size: str, server: str, repeats: int, params: dict
) -> Timing:
    start = time.perf_counter()
    client.infer("segmentation", case, params)  # warm-up: network load, first-touch allocations
    first = time.perf_counter() - start
    walls, stages, peaks = [], [], []
    for _ in range(repeats):
        with PeakMemory(pid) as memory:
            start = time.perf_counter()
            _, result = client.infer("segmentation", case, params)
            walls.append(time.perf_counter() - start)
        peaks.append(memory.peak)
        latencies = result["latencies"]
        pre = latencies["transform"]["pre"]
        load = next(iter(pre.values()))  # the loader is the first pre-transform of both apps
        stage = {
            "load": load,
            "pre": max(latencies["pre"] - load, 0.0),  # both rounded by the server
            "network": latencies["infer"],
            "post": latencies["invert"] + latencies["post"],
            "write": latencies["write"],
        }
        stage["other"] = max(walls[-1] - sum(stage.values()), 0.0)
        stages.append(stage)
    # The median request with its own stages, so that the stages add up to its end-to-end time (medians taken
    # stage by stage come from different requests and need not).
    median = sorted(range(repeats), key=walls.__getitem__)[(repeats - 1) // 2]
    return Timing(case, size, server, walls[median], stages[median], max(peaks) / 2**20, walls, first)


def run_server(
    app: str,
    studies: str,
    conf: dict,
    cases: list[tuple[str, str]],
    server: str,
    repeats: int,
    log: str,
    options: dict | None = None,
) -> list[Timing]:
    process, url = start_server(app, studies, conf, log)
    try:
        wait_until_up(process, url, deadline_s=300)
        wait_for_scoring(url)
        client = MONAILabelClient(url, tmpdir=os.path.dirname(log))
        params = {"result_extension": ".nrrd", "result_dtype": "uint8", **(options or {})}
        return [time_case(client, process.pid, case, size, server, repeats, params) for case, size in cases]
    finally:
        stop_server(process)


def studies_with(tmp: str, name: str, files: dict[str, str]) -> str:
    folder = os.path.join(tmp, name)
    os.makedirs(folder, exist_ok=True)
    for case, path in files.items():
        shutil.copy(path, os.path.join(folder, f"{case}.nii.gz"))
    return folder


def size_of(path: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return "x".join(map(str, reader.GetSize()[:3]))


def ours_conf(tmp: str, name: str, device: str, extra: dict[str, str]) -> dict[str, str]:
    """Our server's configuration; publishes random weights when the configuration has no model to serve."""
    conf = {"device": device, "model_dir": os.path.join(tmp, f"model-{name}"), **extra}
    config = parse_config(conf, APP)
    if serving_checkpoint(config) is None:
        weights = Weights(
            build_network(config.plan).state_dict(), {"run_id": "random"}, SEGMENTATION.published_path(config.model_dir)
        )
        publish([weights], config.plan, [SEGMENTATION])
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="STS case ids (CT)")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests per case on our server")
    parser.add_argument("--stock-repeats", type=int, default=2, help="timed requests per case on the stock server")
    parser.add_argument("--no-stock", action="store_true")
    parser.add_argument("--devices", default="cpu,cuda", help="our server on these (cuda where there is one)")
    parser.add_argument(
        "--keep-largest",
        choices=["auto", "on", "off"],
        default="auto",
        help="our largest-component post-processing (auto: as the served model validated; the shipped one has none)",
    )
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("--name", default="", help="suffix of the result files, to keep candidates apart")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    extra = dict(args.conf)
    require_data()
    os.makedirs(args.out, exist_ok=True)

    timings: list[Timing] = []
    with tempfile.TemporaryDirectory() as tmp:
        ct = {c: os.path.join(DATA, "sts", c, "CT_image.nii.gz") for c in args.cases}
        brats = stack_brats(os.path.join(DATA, "brats_unlabeled"), os.path.join(tmp, f"{BRATS}.nii.gz"))
        ct_cases = [(c, size_of(p)) for c, p in ct.items()]
        brats_case = [(BRATS, size_of(brats) + "x4")]
        ct_studies = studies_with(tmp, "ct", ct)
        mr_studies = studies_with(tmp, "mr4", {BRATS: brats})
        four = {"modality": "mr", "channels": "4"}
        # The same case as its four files (--conf sequences): the server reads and stacks them per request.
        sequence_studies = os.path.join(tmp, "mr-sequences")
        os.makedirs(sequence_studies)
        for name in BRATS_SEQUENCES:
            shutil.copy(os.path.join(DATA, "brats_unlabeled", f"{BRATS}-{name}.nii.gz"), sequence_studies)
        sequences = {"modality": "mr", "sequences": ",".join(BRATS_SEQUENCES)}
        sequence_case = [(BRATS, size_of(brats) + " 4 files")]
        wanted = args.devices.split(",")
        devices = [d for d in wanted if d != "cuda" or torch.cuda.is_available()]
        for device in devices:
            log = os.path.join(tmp, f"ours-ct-{device}.log")
            conf = ours_conf(tmp, f"ct-{device}", device, extra)
            options = {"keep_largest": args.keep_largest}
            timings += run_server(APP, ct_studies, conf, ct_cases, f"ours {device}", args.repeats, log, options)
            log = os.path.join(tmp, f"ours-mr4-{device}.log")
            conf = ours_conf(tmp, f"mr4-{device}", device, {**four, **extra})
            timings += run_server(APP, mr_studies, conf, brats_case, f"ours {device}", args.repeats, log, options)
            log = os.path.join(tmp, f"ours-sequences-{device}.log")
            conf = ours_conf(tmp, f"sequences-{device}", device, {**sequences, **extra})
            timings += run_server(
                APP, sequence_studies, conf, sequence_case, f"ours {device}", args.repeats, log, options
            )
        if len(devices) < len(wanted):
            print("No CUDA device: the GPU part is skipped.")
        dicom = os.path.join(DATA, "sts_dicom", "STS_001")
        if orthanc.MISSING or not os.path.isdir(dicom):
            print(f"The DICOMweb part is skipped: {orthanc.MISSING or dicom + ' is absent'}")
        else:  # STS_001's CT series served by a real PACS (Orthanc) over DICOMweb, to the shipped CT model
            pacs_process, pacs = orthanc.start_orthanc(os.path.join(tmp, "orthanc"))
            try:
                orthanc.upload(pacs, dicom)
                series = [(uid, "STS_001 DICOM CT") for uid in orthanc.series_uids(pacs, "CT")]
                conf = ours_conf(tmp, "dicom", "cpu", extra)
                log = os.path.join(tmp, "ours-dicom.log")
                options = {"keep_largest": args.keep_largest}
                timings += run_server(APP, f"{pacs}/dicom-web", conf, series, "ours dicom", args.repeats, log, options)
            finally:
                orthanc.stop_orthanc(pacs_process)
        if not args.no_stock:
            flair = os.path.join(DATA, "brats_unlabeled", f"{BRATS}-t2f.nii.gz")
            stock_studies = studies_with(tmp, "stock", {**ct, BRATS: flair})
            stock_cases = [*ct_cases, (BRATS, size_of(flair) + " FLAIR")]
            log = os.path.join(tmp, "stock.log")
            conf = {**STOCK_CONF, "device": "cpu"}  # stock ignores it; CPU because the machine has no GPU
            timings += run_server(STOCK_APP, stock_studies, conf, stock_cases, "stock cpu", args.stock_repeats, log)

    report(timings, args)


def report(timings: list[Timing], args: argparse.Namespace) -> None:
    stock = {t.case: t for t in timings if t.server == "stock cpu"}
    lines = [
        f"Auto segmentation end to end through the server; the median request of {args.repeats} (ours) and "
        f"{args.stock_repeats} (stock) requests after a warm-up; {os.cpu_count()} CPU cores, "
        f"torch threads {torch.get_num_threads()}; our keep_largest option: {args.keep_largest}; "
        f"our --conf: {dict(args.conf) or 'the defaults'}.",
        "",
        f"{'server':<11}{'case':<22}{'size':>22}{'first s':>9}{'end-to-end s':>13}"
        + "".join(f"{s + ' s':>10}" for s in STAGES)
        + f"{'outside net':>12}{'peak RSS MB':>12}{'stock/ours':>11}",
    ]
    for t in timings:
        ratio = f"{stock[t.case].end_to_end / t.end_to_end:.1f}x" if t.case in stock and t.server != "stock cpu" else ""
        lines.append(
            f"{t.server:<11}{t.case[-21:]:<22}{t.size:>22}{t.first:>9.2f}{t.end_to_end:>13.2f}"
            + "".join(f"{t.stages[s]:>10.2f}" for s in STAGES)
            + f"{t.outside_network:>12.0%}{t.peak_rss_mb:>12.0f}{ratio:>11}"
        )
    text = "\n".join(lines)
    name = "_".join(["infer_latency", *([args.name] if args.name else [])])
    plot(timings, save_report(args.out, name, text, [asdict(t) for t in timings]))


def plot(timings: list[Timing], path: str) -> None:
    """Left: our stages per case (linear seconds). Right: end to end, ours against stock (log seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [t for t in timings if t.server.startswith("ours")]
    stock = {t.case: t for t in timings if t.server.startswith("stock")}
    fig, (stages_ax, total_ax) = plt.subplots(1, 2, figsize=(12, 0.5 * len(ours) + 2))
    names = [f"{t.server}  {t.case}" for t in ours][::-1]
    left = np.zeros(len(ours))
    for stage, colour in zip(STAGES, plt.cm.tab10.colors):
        values = np.array([t.stages[stage] for t in ours][::-1])
        stages_ax.barh(names, values, left=left, color=colour, label=stage)
        left += values
    stages_ax.set(xlabel="seconds", title="Ours: where the time goes")
    stages_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(STAGES), fontsize=8)
    y = np.arange(len(ours))
    total_ax.barh(y + 0.2, [t.end_to_end for t in ours][::-1], height=0.4, label="ours")
    total_ax.barh(
        y - 0.2, [stock[t.case].end_to_end if t.case in stock else 0 for t in ours][::-1], height=0.4, label="stock"
    )
    total_ax.set_yticks(y, names)
    total_ax.set_xscale("log")
    total_ax.set(xlabel="seconds, end to end (log)", title="Ours against stock MONAI Label")
    total_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
