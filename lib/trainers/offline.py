"""Train the segmentation network offline on a labelled studies folder, with the app's own trainer.

The same code as the server's Train button (:class:`TrainingRun`: preprocessing, split, validation,
publishing), without a server: for starting models (``apps/tumor/pretrained``) and for hospitals that already hold
labelled cases. The weights-only checkpoint is copied to ``--out`` and the run's stats to ``--out`` + ``.json``.

Usage::

    .venv/bin/python -m lib.trainers.offline --studies FOLDER --out apps/tumor/pretrained/ct_tumor.pt \\
        [--conf epochs 300] [--conf train_minutes 60] [--conf device cuda] ...

Distributed (:mod:`lib.trainers.distributed`), one process per GPU (NCCL) or several CPU processes (Gloo, with
``--conf device cpu``), on one machine or several (``torchrun --nnodes``)::

    .venv/bin/torchrun --nproc-per-node 2 --module lib.trainers.offline --studies FOLDER --out model.pt ...

Process 0 writes ``--out``; the others only train.

``FOLDER`` holds the images and ``labels/final/<same name>`` their labels, as the server's studies folder; it is only
read (:mod:`lib.datastore.read_only`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile

from monai.utils import set_determinism

from lib.config import APP_DIR, AppConfig, parse_config
from lib.datastore.read_only import read_only_datastore
from lib.networks.descriptions import SEGMENTATION
from lib.trainers.distributed import join_from_environment, leave
from lib.trainers.run import TrainingRun


def offline_config(conf: dict[str, str], model_dir: str) -> AppConfig:
    """The configuration an offline run trains under: ``conf``, from scratch unless it names a starting checkpoint
    (so the network, an ensemble or not, is the one ``conf`` describes), without the click network, and publishing
    what it trained however few its cases (``finetune_min_labels`` 1: the weights are what was asked for)."""
    defaults = {"checkpoint": "none", "click_epochs": "0", "finetune_min_labels": "1"}
    return parse_config({**defaults, **conf, "model_dir": model_dir}, APP_DIR)


def train_offline(studies: str, out: str, conf: dict[str, str], seed: int | None = None) -> dict:
    """Train on every labelled case of ``studies`` and write the published checkpoint to ``out``.

    Under ``torchrun`` every process calls this; process 0 writes ``out`` and the others return their rank.
    ``seed`` makes the run repeatable (MONAI's ``set_determinism``; process ``r`` of a distributed run draws its
    patches from ``seed + r``)."""
    with tempfile.TemporaryDirectory() as model_dir:
        app_config = offline_config(conf, model_dir)
        world = join_from_environment(app_config.torch_device())
        if seed is not None:
            set_determinism(seed=seed + world.rank)
        with read_only_datastore(studies, app_config) as datastore:  # writes nothing into the studies folder
            stats = TrainingRun(app_config)({}, datastore)
        if not world.main:
            return stats
        published = SEGMENTATION.published_path(app_config.model_dir)
        if stats.get("status") != "DONE" or not os.path.isfile(published):
            raise RuntimeError(f"training did not finish: {stats}")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        shutil.copyfile(published, out)
    stats = {k: v for k, v in stats.items() if k not in ("pid", "niceness")}
    with open(out + ".json", "w") as f:
        json.dump({"conf": conf, "seed": seed, "stats": stats}, f, indent=1)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", required=True, help="folder of images with labels/final/")
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    parser.add_argument("--seed", type=int, help="make the run repeatable")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        stats = train_offline(args.studies, args.out, dict(args.conf), args.seed)
    finally:
        leave()
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
