"""Scribbles and clicks on real sarcomas (``../shared/data/sts``, CT and MR T1), ours against stock MONAI Label.

A simulated annotator (``benchmarks/annotator.py``) draws scribbles on three axial slices and clicks at the deepest
point of the largest error. Every interaction goes through a real server with ``MONAILabelClient``, as 3D Slicer
sends it: ours (``apps/tumor``: ``scribbles`` and ``clicks``), then the stock radiology sample app's
``Histogram+GraphCut`` and ``GMM+GraphCut`` on the same scribbles and its ``deepedit`` on the first click. Prints a
table and writes a Dice-vs-clicks plot.

Usage: ``.venv/bin/python -m benchmarks.interactive [--cases 20] [--clicks 10] [--held-out] [--no-stock]
[--out benchmarks/results]``. ``--held-out`` adds six cases of other collections (pyradiomics brain, breast and lung
tumours, a BraTS oedema), never used to choose the methods' parameters.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import SimpleITK as sitk
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from benchmarks.report import save_report
from tests.support.annotator import dice, next_click, scribbles
from tests.support.server import APP, ROOT, STOCK_APP, start_server, stop_server, wait_until_up
from tests.support.slicer import LABEL_INFO, SLICER

STOCK_CONF = {
    "models": "segmentation,deepedit",
    "use_pretrained_model": "false",
    "sam2": "false",
    "scribbles": "true",
    "labels": "tumor",
}
STOCK_METHODS = ("Histogram+GraphCut", "GMM+GraphCut")
STOCK_CLICKS = "deepedit"  # needs trained weights, which it would download: offline, nothing to click with
MODALITIES = {"CT": "CT", "MR": "MR_T1"}
# Other collections in ../shared/data, never used to choose the methods' parameters (reported as data "other").
HELD_OUT = {
    "brain1_MR": ("pyradiomics/brain1_image.nrrd", "pyradiomics/brain1_label.nrrd"),
    "brain2_MR": ("pyradiomics/brain2_image.nrrd", "pyradiomics/brain2_label.nrrd"),
    "breast1_MR": ("pyradiomics/breast1_image.nrrd", "pyradiomics/breast1_label.nrrd"),
    "lung1_CT": ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung1_label.nrrd"),
    "lung2_CT": ("pyradiomics/lung2_image.nrrd", "pyradiomics/lung2_label.nrrd"),
    "brats_edema_FLAIR": (
        "brats2021_edema/BraTS2021_01646_flair.nii.gz",
        "brats2021_edema/BraTS2021_01646_edema_label.nii.gz",
    ),
}


def read_ijk(path: str) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(path)
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)), image


def write_scribbles(truth: np.ndarray, reference: sitk.Image, path: str) -> str:
    fg, bg = scribbles(truth)
    values = np.zeros(truth.shape, np.uint8)
    values[bg], values[fg] = 2, 3
    image = sitk.GetImageFromArray(np.transpose(values, (2, 1, 0)))
    image.CopyInformation(reference)
    sitk.WriteImage(image, path)
    return path


def run_scribbles(client: MONAILabelClient, model: str, case: dict, params: dict) -> tuple[float | None, float, str]:
    start = time.perf_counter()
    try:
        path, _ = client.infer(model, case["id"], {**SLICER, **params}, label_in=case["scribbles"])
    except MONAILabelClientException as e:
        return None, time.perf_counter() - start, str(e.msg).splitlines()[-1][:120]
    seconds = time.perf_counter() - start
    return dice(read_ijk(path)[0], case["truth"]), seconds, ""


def run_clicks(
    client: MONAILabelClient, case: dict, clicks: int, model: str = "clicks"
) -> tuple[list[float], list[float], str]:
    """Dice after each click and seconds per click; stops at the first refusal (returned as the third item)."""
    spacing = case["spacing"]
    foreground, background, prediction, dices, seconds = [], [], None, [], []
    for _ in range(clicks):
        point, is_foreground = next_click(case["truth"], prediction, spacing)
        (foreground if is_foreground else background).append(list(point))
        params = {**SLICER, "label": "tumor", "foreground": foreground, "background": background}
        start = time.perf_counter()
        try:
            path, _ = client.infer(model, case["id"], params)
        except MONAILabelClientException as e:
            return dices, seconds, str(e.msg).splitlines()[-1][:120]
        seconds.append(time.perf_counter() - start)
        prediction = read_ijk(path)[0]
        dices.append(dice(prediction, case["truth"]))
    return dices, seconds, ""


def sources(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """(case id, group, image, outline) of the first ``--cases`` STS cases (CT and MR), then the held-out ones."""
    found = []
    for folder in sorted(glob.glob(os.path.join(args.data, "STS_*")))[: args.cases]:
        for modality, prefix in MODALITIES.items():
            image = glob.glob(os.path.join(folder, f"{prefix}_image.nii*"))[0]
            mask = glob.glob(os.path.join(folder, f"{prefix}_mask.nii*"))[0]
            found.append((f"{os.path.basename(folder)}_{modality}", modality, image, mask))
    if args.held_out:
        shared = os.path.dirname(args.data)
        for name, (image, mask) in HELD_OUT.items():
            found.append((name, "other", os.path.join(shared, image), os.path.join(shared, mask)))
    return found


def serve(app: str, studies: str, conf: dict, log: str):
    process, url = start_server(app, studies, conf, log)
    wait_until_up(process, url, deadline_s=300)
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "sts"))
    parser.add_argument("--cases", type=int, default=20, help="first N cases of the STS set")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--no-stock", action="store_true", help="skip the stock server")
    parser.add_argument("--held-out", action="store_true", help="add the held-out cases of other collections")
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        sys.exit(f"no STS data at {args.data}: this benchmark needs ../shared/data/sts")
    os.makedirs(args.out, exist_ok=True)

    results: dict = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory() as tmp:
        studies = os.path.join(tmp, "studies")
        os.makedirs(studies)
        cases = []
        for case_id, group, image, mask in sources(args):
            image_path = os.path.join(studies, case_id + (".nrrd" if image.endswith(".nrrd") else ".nii.gz"))
            os.symlink(image, image_path)
            truth, reference = read_ijk(mask)
            scribble_path = write_scribbles(truth > 0, reference, os.path.join(tmp, f"{case_id}_scribbles.nrrd"))
            size = "x".join(map(str, reference.GetSize()))
            cases.append(
                {"id": case_id, "modality": group, "truth": truth > 0, "scribbles": scribble_path,
                 "spacing": reference.GetSpacing(), "size": size}
            )  # fmt: skip

        scribble_params = {"label_info": LABEL_INFO, "selected_label_name": "tumor", "roi": []}
        process, url = serve(APP, studies, {"model_dir": os.path.join(tmp, "model")}, os.path.join(tmp, "ours.log"))
        try:
            client = MONAILabelClient(url, tmpdir=tmp)
            for case in cases:
                score, seconds, error = run_scribbles(client, "scribbles", case, scribble_params)
                results[("ours: scribbles", case["modality"])]["dice"].append(score)
                results[("ours: scribbles", case["modality"])]["seconds"].append(seconds)
                curve, times, error = run_clicks(client, case, args.clicks)
                if error:
                    raise RuntimeError(f"our clicks refused {case['id']}: {error}")
                results[("ours: clicks", case["modality"])]["curves"].append(curve)
                results[("ours: clicks", case["modality"])]["seconds"].extend(times)
                print(f"{case['id']:<14}{case['size']:>12} scribbles {score:.3f} ({seconds:.2f} s)  clicks "
                      + " ".join(f"{d:.2f}" for d in curve), flush=True)  # fmt: skip
        finally:
            stop_server(process)

        if not args.no_stock:
            process, url = serve(STOCK_APP, studies, STOCK_CONF, os.path.join(tmp, "stock.log"))
            try:
                client = MONAILabelClient(url, tmpdir=tmp)
                for case in cases:
                    line = f"{case['id']:<14} stock"
                    for method in STOCK_METHODS:
                        score, seconds, error = run_scribbles(client, method, case, scribble_params)
                        entry = results[(f"stock: {method}", case["modality"])]
                        entry["dice"].append(score)
                        entry["seconds"].append(seconds)
                        if error:
                            entry["errors"].append(error)
                        line += f"  {method} {score if score is None else round(score, 3)}"
                    curve, times, error = run_clicks(client, case, 1, STOCK_CLICKS)
                    entry = results[(f"stock: {STOCK_CLICKS} clicks", case["modality"])]
                    entry["dice"].append(curve[0] if curve else None)
                    entry["seconds"].extend(times or [0.0])
                    if error:
                        entry["errors"].append(error)
                    print(f"{line}  {STOCK_CLICKS} 1 click {[round(d, 3) for d in curve]}", flush=True)
            finally:
                stop_server(process)

    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    lines = [
        f"{'method':<28}{'data':<5}{'cases':>6}{'mean Dice':>11}{'median':>8}{'s/interaction':>15}{'max s':>8}  notes"
    ]
    summary = {}
    for (method, modality), entry in sorted(results.items()):
        if "curves" in entry:
            curves = np.array(entry["curves"])
            final = {n: curves[:, n - 1] for n in (1, 5, args.clicks) if n <= curves.shape[1]}
            scores = final[min(5, args.clicks)]
            note = f"after {min(5, args.clicks)} clicks; " + ", ".join(
                f"{n} clicks {v.mean():.3f}" for n, v in final.items()
            )
            summary[f"{method} {modality}"] = {"mean_by_clicks": curves.mean(0).tolist()}
        else:
            ok = [d for d in entry["dice"] if d is not None]
            scores = np.array(ok) if ok else np.array([np.nan])
            failed = len(entry["dice"]) - len(ok)
            note = f"{failed} refused: {entry['errors'][0]}" if failed else ""
        seconds = entry["seconds"]
        cases = len(entry["curves"] if "curves" in entry else entry["dice"])
        lines.append(
            f"{method:<28}{modality:<5}{cases:>6}{np.nanmean(scores):>11.3f}{np.nanmedian(scores):>8.3f}"
            f"{statistics.mean(seconds):>15.2f}{max(seconds):>8.2f}  {note}"
        )
        summary[f"{method} {modality}"] = {
            **summary.get(f"{method} {modality}", {}),
            "mean_dice": float(np.nanmean(scores)),
            "median_dice": float(np.nanmedian(scores)),
            "mean_seconds": statistics.mean(seconds),
            "max_seconds": max(seconds),
            "note": note,
        }
    table = "\n".join(lines)
    save_report(args.out, "interactive", table, summary)
    plot(results, os.path.join(args.out, "interactive_clicks.png"))


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, modality), entry in sorted(results.items()):
        if "curves" in entry:
            curves = np.array(entry["curves"])
            clicks = np.arange(1, curves.shape[1] + 1)
            data = "held-out, other collections" if modality == "other" else f"STS {modality}"
            ax.plot(clicks, curves.mean(0), marker="o", label=f"{method}, {data} (mean)")
            ax.fill_between(clicks, *np.percentile(curves, [25, 75], axis=0), alpha=0.2)
    ax.axhline(0.75, color="grey", linestyle="--", linewidth=1, label="target after 5 clicks")
    ax.set(xlabel="clicks", ylabel="Dice", ylim=(0, 1), title="Clicks without training (mean, IQR band)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
