"""``tumor-evaluate``: how well predicted labels agree with reference labels, per case and per label.

Two ways to get the predictions::

    tumor-evaluate --labels DIR --predictions DIR --out DIR
    tumor-evaluate --server URL --studies DIR --out DIR [--username NAME --password-stdin]

The first compares label files matched by case name (``case7.nii.gz`` with ``case7.nrrd``...). The second sends
every labelled image of a studies folder (images, and ``labels/final/<same name>``) to a running server, as 3D
Slicer sends a local volume (a session), asks for the auto segmentation and compares it with the label. Writes
``metrics.csv``, ``summary.json``, ``report.md`` and two plots into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

import requests
from monailabel.client.client import MONAILabelClientException

from lib.evaluation.cases import case_rows, pairs, volumes
from lib.evaluation.metrics import SURFACE_TOLERANCE_MM
from lib.evaluation.report import write_report

logger = logging.getLogger(__name__)


def evaluate_folders(
    labels: str,
    predictions: str,
    out: str,
    label_names: Sequence[str],
    tolerance_mm: float,
    sources: tuple[str, str] | None = None,
) -> dict:
    """Compare the label files of two folders; returns the summary.

    Args:
        sources: how the report names the references and the predictions (default: the two folders).
    """
    rows = [
        row
        for case, reference, prediction in pairs(labels, predictions)
        for row in case_rows(case, reference, prediction, label_names, tolerance_mm)
    ]
    shown_labels, shown_predictions = sources or (labels, predictions)
    settings = {
        "labels": shown_labels,
        "predictions": shown_predictions,
        "tolerance_mm": tolerance_mm,
        "label_names": list(label_names),
    }
    return write_report(out, rows, settings)


def segment_with_server(
    server: str, studies: str, folder: str, model: str, username: str = "", password: str = ""
) -> tuple[str, str]:
    """Auto-segment every labelled image of ``studies`` with ``server``; returns the label and prediction folders.

    Each image goes to the server in a session, as 3D Slicer sends a local volume, so the server need not hold it.
    """
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(server, tmpdir=folder)
    if client.auth_enabled():
        if not username:
            raise ValueError(f"{server} needs a login: give --username and --password-stdin")
        client.update_auth(client.auth_token(username, password))
    final = os.path.join(studies, "labels", "final")
    references = volumes(final) if os.path.isdir(final) else {}
    images = volumes(studies)
    cases = sorted(set(references) & set(images))
    if not cases:
        raise ValueError(f"no image in {studies} has a label in {final}")
    predictions = os.path.join(folder, "predictions")
    os.makedirs(predictions)
    for i, case in enumerate(cases, start=1):
        session = client.create_session(images[case])["session_id"]
        try:
            path, _ = client.infer(model, "", {"result_extension": ".nii.gz"}, session_id=session)
        finally:
            client.remove_session(session)
        shutil.move(path, os.path.join(predictions, f"{case}.nii.gz"))
        logger.info("%d/%d %s segmented", i, len(cases), case)
    labels = os.path.join(folder, "labels")
    os.makedirs(labels)
    for case in cases:
        os.symlink(os.path.abspath(references[case]), os.path.join(labels, os.path.basename(references[case])))
    return labels, predictions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tumor-evaluate", description=__doc__.splitlines()[0])
    source = parser.add_argument_group("predictions: two folders, or a server and a studies folder")
    source.add_argument("--labels", help="folder of reference labels")
    source.add_argument("--predictions", help="folder of predicted labels, same case names")
    source.add_argument("--server", help="URL of a running tumour server, e.g. http://127.0.0.1:8000")
    source.add_argument("--studies", help="studies folder: images and labels/final/<same name>")
    parser.add_argument("--out", required=True, help="folder for metrics.csv, summary.json, report.md and plots")
    parser.add_argument("--label-names", default="tumor", help="names of label values 1..K, comma-separated")
    parser.add_argument(
        "--tolerance-mm",
        type=float,
        default=SURFACE_TOLERANCE_MM,
        help=f"surface Dice tolerance (mm; default {SURFACE_TOLERANCE_MM:g})",
    )
    parser.add_argument("--model", default="segmentation", help="the server's model (with --server)")
    parser.add_argument("--username", default="", help="login (with --server, when the server has users)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [n.strip() for n in args.label_names.split(",") if n.strip()]
    folders, server = bool(args.labels or args.predictions), bool(args.server or args.studies)
    if folders == server or (folders and not (args.labels and args.predictions)) or (server and not args.studies):
        parser.error("give either --labels and --predictions, or --server and --studies")
    if len(set(names)) != len(names):
        parser.error(f"--label-names names a label twice: {','.join(names)}")
    if args.tolerance_mm <= 0 or not names:
        parser.error("--tolerance-mm must be positive and --label-names must name at least one label")
    try:
        if server:
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
            with tempfile.TemporaryDirectory(prefix="tumor-evaluate-") as tmp:
                labels, predictions = segment_with_server(
                    args.server, args.studies, tmp, args.model, args.username, password
                )
                sources = (os.path.join(args.studies, "labels", "final"), f"{args.server} ({args.model})")
                summary = evaluate_folders(labels, predictions, args.out, names, args.tolerance_mm, sources)
        else:
            summary = evaluate_folders(args.labels, args.predictions, args.out, names, args.tolerance_mm)
    except (ValueError, OSError) as e:
        print(f"tumor-evaluate: {e}", file=sys.stderr)
        return 2
    except MONAILabelClientException as e:  # the server refused: a wrong password, a model it does not serve
        print(f"tumor-evaluate: {args.server} refused the request: {e.msg}", file=sys.stderr)
        return 2
    except requests.RequestException as e:  # the server went away meanwhile
        print(f"tumor-evaluate: {args.server} did not answer: {e}", file=sys.stderr)
        return 2
    for label, entry in summary["labels"].items():
        dice = entry["dice"]
        print(f"{label}: {entry['cases']} cases, mean Dice {dice['mean']:.3f} (median {dice['median']:.3f})")
    print(f"report: {os.path.join(args.out, 'report.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
