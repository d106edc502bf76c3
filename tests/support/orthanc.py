"""A real Orthanc PACS with its DICOMweb plug-in on a loopback port, for tests and benchmarks.

Debian packages ``orthanc`` and ``orthanc-dicomweb``; ``make test`` installs them where it can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import requests

from tests.support.server import free_port

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
MISSING = (
    None
    if ORTHANC and os.path.isfile(DICOMWEB_PLUGIN)
    else "needs Orthanc and its DICOMweb plug-in (apt-get install orthanc orthanc-dicomweb)"
)


def start_orthanc(folder: str) -> tuple[subprocess.Popen, str]:
    """Start Orthanc with an empty database in ``folder``; returns the process and its HTTP address."""
    os.makedirs(folder, exist_ok=True)
    port = free_port()
    config = {
        "Name": "tests",
        "StorageDirectory": os.path.join(folder, "storage"),
        "IndexDirectory": os.path.join(folder, "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    path = os.path.join(folder, "orthanc.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(folder, "orthanc.log"), "w")
    process = subprocess.Popen([ORTHANC, path], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}; see {folder}/orthanc.log")
        try:
            if requests.get(f"{url}/system", timeout=5).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    process.kill()
    raise TimeoutError("Orthanc did not answer within 60 s")


def upload(url: str, folder: str) -> int:
    """Store every DICOM file under ``folder`` in Orthanc; returns how many were stored."""
    count = 0
    for parent, _, names in os.walk(folder):
        for name in sorted(names):
            with open(os.path.join(parent, name), "rb") as f:
                requests.post(f"{url}/instances", data=f.read(), timeout=60).raise_for_status()
            count += 1
    return count


def stop_orthanc(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def series_uids(url: str, modality: str) -> list[str]:
    """SeriesInstanceUID of every series of ``modality`` stored in Orthanc."""
    series = requests.get(f"{url}/series", params={"expand": ""}, timeout=60).json()
    return sorted(
        s["MainDicomTags"]["SeriesInstanceUID"] for s in series if s["MainDicomTags"].get("Modality") == modality
    )
