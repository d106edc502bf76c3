"""Replay: labelled cases from elsewhere mixed into every training run (``replay_studies``).

Fine-tuning a starting model on a hospital's first labels pulls it towards those few cases. Mixing cases it learned
from into each run (experience replay, as continual learning does) keeps them in view. ``replay_studies`` is a
studies folder laid out as the server's (images, and their labels under ``labels/final``), e.g. the one
``lib.trainers.offline`` trained the starting model on. Each run adds at most as many replay cases as it has own
training cases, so the annotators' labels keep at least half of every epoch. The draw is seeded by the run's own
case names: the same labels draw the same replay cases, and each new label draws again. Replay cases only train:
validation, and so the choice of the weights to serve, stays on the server's own labels.
The folder is only read (:mod:`lib.datastore.read_only`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from lib.config import AppConfig
from lib.datastore.read_only import in_folder, read_only_datastore
from lib.trainers.cases import Case, case_id, checked_cases

logger = logging.getLogger(__name__)


def replay_cases(app_config: AppConfig, own: Sequence[Case]) -> list[Case]:
    """The replay cases to train on beside ``own`` (a run's own training cases), in name order; none without
    ``replay_studies``. A replay case named as one of ``own`` is left out: it trains once, as labelled here."""
    if not app_config.replay_studies or not own:
        return []
    usable, skipped = labelled_cases(app_config.replay_studies, app_config)
    sequences = app_config.sequences
    names = sorted(case_id(c, sequences) for c in own)
    candidates = [c for c in usable if case_id(c, sequences) not in names]
    drawn = random.Random(",".join(names)).sample(candidates, min(len(own), len(candidates)))
    logger.info(
        "Replay: %d of %d usable case(s) of %s beside %d own training case(s)%s",
        len(drawn),
        len(candidates),
        app_config.replay_studies,
        len(own),
        f"; {len(skipped)} unusable skipped" if skipped else "",
    )
    return sorted(drawn, key=lambda c: case_id(c, sequences))


def labelled_cases(folder: str, app_config: AppConfig) -> tuple[list[Case], list[str]]:
    """The usable labelled cases of a studies folder, with their paths in it, and why each other one is not (as
    :func:`lib.trainers.cases.checked_cases`), listed without writing into the folder."""
    with read_only_datastore(folder, app_config) as datastore:
        usable, skipped = checked_cases(datastore, app_config)
        return [{k: in_folder(path, datastore, folder) for k, path in c.items()} for c in usable], skipped
