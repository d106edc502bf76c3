"""``tumor-segment``: pre-segment a folder or a PACS before the annotators start, with the server's model.

Usage::

    tumor-segment --input FOLDER --output LABELS [--conf KEY VALUE ...] [--workers N | --scheduler ADDRESS]
    tumor-segment --input http://pacs/dicom-web --output JOURNAL_FOLDER [...]

A folder's images get NIfTI labels ``OUTPUT/<image name>.nii.gz``; a PACS's series (of the configured modality)
get a DICOM SEG stored back on the series. ``--conf`` takes the server's settings (``model_dir``, ``modality``,
``checkpoint``, ``device``...), so the batch uses the same weights and pipeline as the server's auto segmentation.

The batch is resumable: a folder's images whose label exists, and a PACS's series that the journal
(``OUTPUT/segment_journal.jsonl``, one JSON line per case) lists as done or empty, are skipped; failed cases are
retried. It streams: cases are listed lazily and at most ``2 x workers`` are in flight, so memory does not grow
with the archive. It runs in this process, on a local Dask cluster of ``--workers`` processes, or on an existing
Dask cluster (``--scheduler tcp://host:8786``; its workers need the same project, and for folders the same paths).
Exits 1 when any case failed (each named in the journal and the log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import requests
from tqdm import tqdm

from lib.infers.errors import ModelNotTrainedError
from lib.segment.cases import CaseTask, count_folder_cases, folder_cases, is_pacs, pacs_cases
from lib.segment.work import DONE, EMPTY, FAILED, Conf, Outcome, segment, segmenter

logger = logging.getLogger(__name__)

JOURNAL = "segment_journal.jsonl"
IN_FLIGHT_PER_WORKER = 2


def read_journal(path: str) -> dict[str, str]:
    """Case -> its last status in a journal (missing file: nothing yet)."""
    status: dict[str, str] = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    status[entry["case"]] = entry["status"]
                except (ValueError, KeyError):
                    continue  # a line cut short by a crash
    return status


def segment_locally(tasks: Iterable[CaseTask], conf: Conf) -> Iterator[Outcome]:
    """Each case in turn, in this process."""
    for task in tasks:
        yield segment(task, conf)


def segment_on_dask(
    tasks: Iterable[CaseTask], conf: Conf, client: Any, threads: int | None, work: Callable[..., Outcome] = segment
) -> Iterator[Outcome]:
    """The cases on a Dask cluster, at most ``IN_FLIGHT_PER_WORKER`` per worker thread submitted at a time; ``work``
    (:func:`segment`) runs on the workers."""
    from distributed import as_completed

    window = IN_FLIGHT_PER_WORKER * max(1, sum(client.nthreads().values()))
    tasks = iter(tasks)

    def submit(task: CaseTask) -> Any:
        # pure=False: a case asked for again is segmented again (its label may have been removed meanwhile).
        return client.submit(work, task, conf, threads, pure=False)

    running = as_completed([submit(task) for task in islice(tasks, window)])
    for future in running:
        yield future.result()
        future.release()
        for task in islice(tasks, 1):
            running.add(submit(task))


def run_batch(
    source: str, output: str, conf: dict[str, str], workers: int = 0, scheduler: str | None = None
) -> dict[str, int]:
    """Segment every unfinished case of ``source`` into ``output``; the count of each outcome this time.

    Raises:
        ModelNotTrainedError: there are no weights to segment with (checked before any case is listed).
        ValueError: ``source`` is neither a folder nor a DICOMweb URL.
    """
    frozen: Conf = tuple(sorted(conf.items()))
    infer = segmenter(frozen, None)  # the one segment() uses here; a wrong --conf fails now, naming the setting
    if infer.get_path() is None:
        raise ModelNotTrainedError(f"no weights to segment with: {infer.untrained_message}")
    os.makedirs(output, exist_ok=True)
    journal = os.path.join(output, JOURNAL)
    if is_pacs(source):
        finished = {c for c, s in read_journal(journal).items() if s in (DONE, EMPTY)}
        tasks: Iterable[CaseTask] = pacs_cases(source, infer.app_config.plan.modality, finished)
        total, initial = None, 0  # a PACS is listed page by page: its size is not known in advance
    else:
        sequences = infer.app_config.sequences
        total, initial = count_folder_cases(source, output, sequences)
        tasks = folder_cases(source, output, sequences)
    counts = {DONE: 0, EMPTY: 0, FAILED: 0}
    client = cluster = None
    if scheduler or workers:
        from distributed import Client, LocalCluster

        logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask sets its loggers up on import

        if scheduler:
            client = Client(scheduler)
            outcomes = segment_on_dask(tasks, frozen, client, threads=None)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
            outcomes = segment_on_dask(tasks, frozen, client, threads=max(1, (os.cpu_count() or 1) // workers))
    else:
        outcomes = segment_locally(tasks, frozen)
    start = time.perf_counter()
    try:
        with open(journal, "a") as log, tqdm(total=total, initial=initial, unit="case", desc="tumor-segment") as bar:
            for outcome in outcomes:
                log.write(json.dumps(outcome.as_dict()) + "\n")
                log.flush()
                counts[outcome.status] += 1
                if outcome.status == FAILED:
                    logger.error("%s failed: %s", outcome.case, outcome.error)
                bar.update(1)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    minutes = (time.perf_counter() - start) / 60
    cases = sum(counts.values())
    logger.info("%d case(s) in %.1f min (%.1f per minute): %s", cases, minutes, cases / max(minutes, 1e-9), counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tumor-segment", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="a folder of images, or a DICOMweb URL (http://...)")
    parser.add_argument("--output", required=True, help="folder of the labels (folder input) and of the journal")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    engine = parser.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, default=0, help="worker processes of a local Dask cluster (0: none)")
    engine.add_argument("--scheduler", help="address of an existing Dask cluster's scheduler")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for chatty in ("monailabel", "lib.infers", "distributed", "ignite"):  # a line per case would hide the bar
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        counts = run_batch(args.input, args.output, dict(args.conf), args.workers, args.scheduler)
    except (ModelNotTrainedError, ValueError) as e:
        parser.exit(2, f"tumor-segment: error: {e}\n")
    except requests.RequestException as e:  # the PACS: unreachable, or refused the login
        parser.exit(2, f"tumor-segment: error: the DICOMweb server {args.input} did not serve the images: {e}\n")
    except OSError as e:  # the output is a file, or cannot be written
        parser.exit(2, f"tumor-segment: error: {e.strerror}: {e.filename}\n")
    print(json.dumps(counts))
    sys.exit(1 if counts[FAILED] else 0)


if __name__ == "__main__":
    main()
