"""Combine separately trained segmentation checkpoints into one ensemble checkpoint (:mod:`lib.networks.ensemble`).

This is how the shipped CT model is made: the members are trained apart (``lib.trainers.offline``, each run with
its own seed and epochs), then written as one checkpoint whose plan records ``ensemble: N``. The app serves it
with the members' softmax outputs averaged, and a Train round fine-tunes the members together on the annotators'
labels. Cross-validation scores ensembles of fold models the same way (``lib.trainers.crossval --trained``).

Usage::

    .venv/bin/python -m lib.trainers.ensemble --members A.pt B.pt [...] --out ENSEMBLE.pt [--conf KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
from collections.abc import Sequence
from typing import Any

from lib.atomic import write_json
from lib.checkpoint import Weights, publish, read_checkpoint
from lib.config import APP_DIR, parse_config
from lib.config.plan import ModelPlan
from lib.networks.descriptions import SEGMENTATION
from lib.transforms.components import KEEP_LARGEST

# What each member's checkpoint metadata contributes to the ensemble's record of it.
MEMBER_KEYS = ("run_id", "published", "val_dice", "train_dice", "epoch", "cases", KEEP_LARGEST)


def combine(members: Sequence[str], plan: ModelPlan, out: str) -> dict[str, Any]:
    """Write the single-network checkpoints ``members`` (each trained for ``plan``) to ``out`` as one ensemble.

    The ensemble keeps a label's largest component only where every member's validation chose it; it has trained
    on every case a member trained on, and records each member's file, run and validation figure. When every
    member has its training record beside it (``<member>.json``, written by ``lib.trainers.offline``), they are
    written together to ``<out>.json``.

    Returns:
        The ensemble checkpoint's metadata.

    Raises:
        ValueError: for fewer than two members, or a member that records no plan (a bare state dict).
        lib.checkpoint.CheckpointError: when a member cannot be read, or was trained for another plan or is itself
            an ensemble.
    """
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 member checkpoints, not {len(members)}")
    single = dataclasses.replace(plan, ensemble=1)
    state: dict[str, Any] = {}
    metas = []
    for i, path in enumerate(members):
        member_state, meta = read_checkpoint(path, single, SEGMENTATION)
        if "architecture" not in meta:
            raise ValueError(f"member {os.path.basename(path)} records no plan to check against")
        state |= {f"members.{i}.{key}": value for key, value in member_state.items()}
        metas.append(meta)
    trained_on = set().union(*(m.get("trained_on", []) for m in metas))
    validated_on = set.intersection(*(set(m.get("validated_on", [])) for m in metas)) - trained_on
    chosen = [n for n in metas[0].get(KEEP_LARGEST, []) if all(n in m.get(KEEP_LARGEST, []) for m in metas)]
    meta = {
        "run_id": "+".join(str(m.get("run_id", "?")) for m in metas),
        "published": datetime.datetime.now().isoformat(timespec="seconds"),
        KEEP_LARGEST: chosen,
        # Unknown when a member does not record it: fine-tuning then never validates the ensemble as "epoch 0".
        **({"trained_on": sorted(trained_on)} if all("trained_on" in m for m in metas) else {}),
        "validated_on": sorted(validated_on),
        "members": [
            {"file": os.path.basename(p), **{k: m[k] for k in MEMBER_KEYS if k in m}} for p, m in zip(members, metas)
        ],
    }
    ensemble = dataclasses.replace(plan, ensemble=len(members))
    publish([Weights(state, meta, out)], ensemble, [SEGMENTATION])
    records = [_training_record(path) for path in members]
    if all(records):  # the members' training records (lib.trainers.offline), kept beside the ensemble
        write_json(f"{out}.json", {"members": [{"file": os.path.basename(p), **r} for p, r in zip(members, records)]})
    elif os.path.isfile(f"{out}.json"):  # an earlier ensemble's record would describe other networks
        os.remove(f"{out}.json")
    return meta


def _training_record(checkpoint: str) -> dict[str, Any] | None:
    """The training record ``lib.trainers.offline`` wrote beside ``checkpoint``, if any."""
    path = f"{checkpoint}.json"
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", nargs="+", required=True, help="single-network checkpoints, 2 or more")
    parser.add_argument("--out", required=True, help="ensemble checkpoint to write")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args()
    plan = parse_config({"checkpoint": "none", **dict(args.conf), "ensemble": "1"}, APP_DIR).plan
    meta = combine(args.members, plan, args.out)
    print(f"{args.out}: ensemble of {len(args.members)} ({meta['run_id']}), trained on {len(meta['trained_on'])} cases")


if __name__ == "__main__":
    main()
