"""Monte-Carlo dropout scoring of unlabelled images."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lib.config import AppConfig
from lib.datastore import TumorDatastore
from lib.scoring import EpistemicScoring, mutual_information
from lib.scoring.epistemic import MODEL_TS_KEY, SCORE_KEY
from tests.synthetic import write_case


def test_mutual_information_is_zero_when_samples_agree() -> None:
    probabilities = torch.softmax(torch.randn(1, 3, 4, 5, 6), 1).expand(5, 3, 4, 5, 6)
    mi = mutual_information(probabilities)
    assert mi.shape == (4, 5, 6)
    assert float(mi.abs().max()) < 1e-5


def test_mutual_information_is_positive_when_samples_disagree() -> None:
    # Two confident samples voting for different classes: MI is the entropy of their mean, log 2.
    confident = torch.tensor([[0.999, 0.001], [0.001, 0.999]]).reshape(2, 2, 1, 1, 1)
    mi = mutual_information(confident)
    assert mi.shape == (1, 1, 1)
    assert 0.6 < float(mi) <= math.log(2)


def test_mutual_information_ignores_agreeing_uncertainty() -> None:
    # Both samples say 50/50: high predictive entropy, but no disagreement, so no epistemic uncertainty.
    unsure = torch.full((4, 2, 3, 3, 3), 0.5)
    assert float(mutual_information(unsure).max()) < 1e-5


@pytest.fixture
def datastore(tmp_path: Path, config: AppConfig) -> TumorDatastore:
    """A datastore with two unlabelled synthetic images."""
    studies = tmp_path / "studies"
    for seed in (0, 1):
        write_case(str(studies), f"case{seed}", seed, label_folder=str(tmp_path / "source-labels"))
    return TumorDatastore(str(studies), config)


@pytest.fixture
def scoring_config(make_config: Callable[..., AppConfig]) -> AppConfig:
    return make_config(mc_samples="2")


def test_scores_each_unlabelled_image_once_per_weights(
    scoring_config: AppConfig, datastore: TumorDatastore, publish_weights: Callable[..., str]
) -> None:
    published = publish_weights(scoring_config)
    scoring = EpistemicScoring(scoring_config)

    first = scoring({}, datastore)

    assert first["scored"] == 2
    assert first["failed"] == []
    for image_id in ("case0", "case1"):
        info = datastore.get_image_info(image_id)
        # Dropout makes the passes disagree, so the mutual information is positive (and finite).
        assert math.isfinite(info[SCORE_KEY]) and info[SCORE_KEY] > 0
        assert info[MODEL_TS_KEY] == os.stat(published).st_mtime_ns  # scored with these weights

    scores = {i: datastore.get_image_info(i)[SCORE_KEY] for i in ("case0", "case1")}
    second = scoring({}, datastore)

    assert second["scored"] == 0
    assert {i: datastore.get_image_info(i)[SCORE_KEY] for i in ("case0", "case1")} == scores


def test_newly_published_weights_rescore(
    scoring_config: AppConfig, datastore: TumorDatastore, publish_weights: Callable[..., str]
) -> None:
    scoring = EpistemicScoring(scoring_config)
    second = 1_700_000_000 * 10**9
    path = publish_weights(scoring_config, run_id="first")
    os.utime(path, ns=(second, second + 100_000_000))
    assert scoring({}, datastore)["scored"] == 2

    # The next run publishes within the same second (a tiny dataset on a fast GPU): new weights, new scores.
    publish_weights(scoring_config, run_id="second")
    os.utime(path, ns=(second, second + 600_000_000))

    assert scoring({}, datastore)["scored"] == 2


def test_without_weights_scores_nothing(scoring_config: AppConfig, datastore: TumorDatastore) -> None:
    result = EpistemicScoring(scoring_config)({}, datastore)

    assert result["scored"] == 0
    for image_id in ("case0", "case1"):
        info = datastore.get_image_info(image_id)
        assert SCORE_KEY not in info and MODEL_TS_KEY not in info


def test_unreadable_image_is_reported_not_fatal(
    scoring_config: AppConfig, datastore: TumorDatastore, publish_weights: Callable[..., str]
) -> None:
    publish_weights(scoring_config)
    Path(datastore.get_image_uri("case1")).write_bytes(b"\x00" * 1024)  # damaged on disk after upload

    result = EpistemicScoring(scoring_config)({}, datastore)

    assert result["scored"] == 1
    assert result["failed"] == ["case1"]
    assert SCORE_KEY in datastore.get_image_info("case0")
    assert SCORE_KEY not in datastore.get_image_info("case1")
