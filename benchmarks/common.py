"""What every benchmark needs: where the shared real data is, how the STS cases split, labelled studies folders,
and waiting for the server's background jobs. Plots and tables are :mod:`benchmarks.report`."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import requests
import SimpleITK as sitk

from tests.support.server import ROOT

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")  # the shared real data (../shared/data)
STS = os.path.join(DATA, "sts")  # soft-tissue sarcoma cases, STS_001..., each with CT and MR T1 and masks
FILES = {"CT": ("CT_image.nii.gz", "CT_mask.nii.gz"), "MR": ("MR_T1_image.nii.gz", "MR_T1_mask.nii.gz")}
IMAGE, MASK = FILES["CT"]
DEV_EVERY = 4  # every 4th STS case (5 of 20) is a dev case, never labelled


def require_data(path: str = DATA) -> None:
    """Stop the benchmark with a clear message when the shared real data is absent."""
    if not os.path.isdir(path):
        raise SystemExit(f"{path} is absent: this benchmark needs the shared real data")


def read_mask(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path)) > 0


def split_cases(data: str, dev: list[str] | None = None) -> tuple[list[str], list[str]]:
    """The STS cases a benchmark may label (pool) and the dev cases it measures on (by default every
    ``DEV_EVERY``-th)."""
    cases = sorted(c for c in os.listdir(data) if c.startswith("STS_"))
    if dev and not set(dev) <= set(cases):
        raise SystemExit(f"dev cases {sorted(set(dev) - set(cases))} are not in {data}")
    dev = dev or cases[DEV_EVERY - 1 :: DEV_EVERY]
    return [c for c in cases if c not in dev], dev


def labelled_studies(
    folder: str, data: str, images: list[str], labelled: list[str], image: str = IMAGE, mask: str = MASK
) -> str:
    """A studies folder with the STS ``images`` and, for the ``labelled`` ones, their masks as final labels."""
    os.makedirs(os.path.join(folder, "labels", "final"))
    for case in images:
        shutil.copy(os.path.join(data, case, image), os.path.join(folder, f"{case}.nii.gz"))
    for case in labelled:
        shutil.copy(os.path.join(data, case, mask), os.path.join(folder, "labels", "final", f"{case}.nii.gz"))
    return folder


def wait_for_scoring(url: str, deadline_s: float = 900) -> None:
    """Until the server's start-up scoring job has finished (no scoring process running)."""
    deadline = time.monotonic() + deadline_s
    time.sleep(2)  # the job is queued right after start-up
    while time.monotonic() < deadline:
        if requests.get(f"{url}/scoring/", params={"check_if_running": "true"}, timeout=10).status_code == 404:
            return
        time.sleep(1)
    raise TimeoutError("scoring still running")
