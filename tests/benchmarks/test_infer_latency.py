"""The latency benchmark reports the median request with that request's own stages."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks.infer_latency import STAGES, time_case


class FakeClient:
    """Answers like the server: after ``seconds`` of wall time, with per-stage latencies scaled from ``network``."""

    def __init__(self, requests: list[tuple[float, float]]) -> None:
        self.requests = [(0.0, 0.0), *requests]  # the first answers the warm-up

    def infer(self, model: str, image: str, params: dict) -> tuple[None, dict]:
        seconds, network = self.requests.pop(0)
        time.sleep(seconds)
        latencies = {
            "transform": {"pre": {"LoadVolumed": network / 4}},
            "pre": network / 2,
            "infer": network,
            "invert": 0.0,
            "post": network / 8,
            "write": network / 16,
        }
        return None, {"latencies": latencies}


def test_the_median_request_is_reported_with_its_own_stages() -> None:
    # Wall times 0.30, 0.10, 0.20 s; the median request has the longest network, so medians taken stage by stage
    # (network 0.05) would not be its stages.
    client = FakeClient([(0.30, 0.04), (0.10, 0.05), (0.20, 0.10)])

    timing = time_case(client, os.getpid(), "STS_004", "173x183x85", "ours cpu", 3, {})

    assert timing.end_to_end == pytest.approx(0.20, abs=0.05)
    assert timing.end_to_end == sorted(timing.runs)[1]
    assert timing.stages["network"] == 0.10
    assert timing.stages["load"] == 0.025
    assert timing.stages["pre"] == pytest.approx(0.025)
    assert sum(timing.stages[s] for s in STAGES) == pytest.approx(timing.end_to_end)
