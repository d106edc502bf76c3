"""Shared fixtures of the library unit tests: a tiny CPU configuration and synthetic cases on awkward grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lib.checkpoint import Weights, publish
from lib.config import AppConfig, parse_config
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION, NetworkDescription
from tests.synthetic import SyntheticCase, write_case

# Small enough for CPU unit tests: 8 feature maps (segresnet's group norm needs a multiple of 8) and a 16x16x8
# window (segresnet needs patch sizes divisible by 8). Float32: on maps this small bfloat16 is no faster, and
# oneDNN's non-finite bfloat16 weight gradients (lib.trainers.optimizer) would make the learning tests vary from
# run to run; tests/lib/networks/test_precision.py tests bfloat16 on larger patches.
# Tests that check learning were tuned with flips only; spatial augmentation has tests of its own.
TINY = {"features": "8", "patch_size": "16,16,8", "device": "cpu", "amp": "off", "augmentation": "flips"}


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., AppConfig]:
    """Factory of tiny configurations; keyword arguments are extra ``--conf`` strings (model_dir under tmp)."""

    def make(**conf: str) -> AppConfig:
        values = {**TINY, "model_dir": str(tmp_path / "model"), **conf}
        return parse_config(values, str(tmp_path / "app"))

    return make


@pytest.fixture
def config(make_config: Callable[..., AppConfig]) -> AppConfig:
    """The default tiny configuration: one label ``tumor``, one CT channel, segresnet."""
    return make_config()


@pytest.fixture
def make_case(tmp_path: Path) -> Callable[..., SyntheticCase]:
    """Factory writing synthetic cases under ``tmp/cases`` (labels under ``tmp/case-labels``)."""

    def make(name: str = "case0", seed: int = 0, **kwargs: object) -> SyntheticCase:
        kwargs.setdefault("label_folder", str(tmp_path / "case-labels"))
        return write_case(str(kwargs.pop("folder", tmp_path / "cases")), name, seed, **kwargs)

    return make


@pytest.fixture
def case(make_case: Callable[..., SyntheticCase]) -> SyntheticCase:
    """One 48x40x20 CT case with anisotropic spacing and an oblique direction."""
    return make_case()


@pytest.fixture
def publish_weights() -> Callable[..., str]:
    """Publishes an untrained network's weights as the served checkpoint of a configuration; returns the path."""

    def publish_untrained(app_config: AppConfig, run_id: str = "t", network: NetworkDescription = SEGMENTATION) -> str:
        state = build_network(app_config.plan, network).state_dict()
        path = network.published_path(app_config.model_dir)
        publish([Weights(state, {"run_id": run_id}, path)], app_config.plan, [network])
        return path

    return publish_untrained
