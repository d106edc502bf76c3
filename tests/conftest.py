"""Fixtures for every test: seeded random number generators, so that tests that train give the same result each run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from monai.utils import set_determinism


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Seeds Python's, NumPy's and torch's generators (MONAI's ``set_determinism``) before each test."""
    set_determinism(seed=int(os.environ.get("TEST_SEED", "0")))
    yield
    set_determinism(seed=None)
