"""Benchmark results on disk: the printed table and the raw figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import save_report


def test_save_report_prints_and_writes_the_table_and_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plot = save_report(str(tmp_path), "latency", "case  s\nSTS_004  0.61", {"STS_004": [0.61, 0.6]})

    assert capsys.readouterr().out == "\ncase  s\nSTS_004  0.61\n"
    assert (tmp_path / "latency.txt").read_text() == "case  s\nSTS_004  0.61\n"
    assert json.loads((tmp_path / "latency.json").read_text()) == {"STS_004": [0.61, 0.6]}
    assert plot == str(tmp_path / "latency.png")
