"""Paired comparison of two cross-validations: pairing, hand-computed figures and the verdict."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.compare_crossval import compare, main, report


def result(dice: dict[str, tuple[int, float]]) -> dict:
    """A cross-validation result with one ``tumor`` row per case: case -> (fold, Dice)."""
    cases = [{"case": c, "label": "tumor", "fold": f, "dice": d} for c, (f, d) in dice.items()]
    return {"conf": {"epochs": "1"}, "cases": cases}


def test_mean_difference_wins_and_folds_by_hand() -> None:
    a = result({"c1": (0, 0.6), "c2": (0, 0.4), "c3": (1, 0.8), "c4": (1, 0.5)})
    b = result({"c1": (0, 0.5), "c2": (0, 0.5), "c3": (1, 0.6), "c4": (1, 0.5)})

    c = compare(a, b)

    # differences +0.1, -0.1, +0.2, 0.0
    assert [p["case"] for p in c.pairs] == ["c1", "c2", "c3", "c4"]
    assert [p["difference"] for p in c.pairs] == pytest.approx([0.1, -0.1, 0.2, 0.0])
    assert (c.mean_a, c.mean_b, c.mean_difference) == pytest.approx((0.575, 0.525, 0.05))
    assert (c.higher, c.lower) == (2, 1)
    assert c.mean_absolute_difference == pytest.approx(0.1)  # (0.1 + 0.1 + 0.2 + 0) / 4
    assert c.folds == [0, 1]
    assert c.fold_difference == pytest.approx([0.0, 0.1])
    # a resampled mean of these four lies between -0.1 and +0.2; the interval spans 0, so no verdict for A
    low, high = c.interval
    assert -0.1 <= low < 0 < 0.05 < high <= 0.2
    assert not c.clear
    text = report(c, "cand", "ref")
    assert "A higher in 2 of 4 cases, lower in 1; folds A wins: 1 of 2 (1)" in text
    assert "per fold A - B: +0.000, +0.100" in text
    assert "a case's Dice differs by 0.100 on average (largest 0.200)" in text
    assert text.endswith("verdict: no clear difference")


def test_a_candidate_better_on_every_case_is_clearly_better() -> None:
    a = result({f"c{i}": (i % 2, 0.5 + i / 10) for i in range(1, 6)})
    b = result({f"c{i}": (i % 2, 0.5) for i in range(1, 6)})

    c = compare(a, b, resamples=2000, seed=3)

    # every resampled mean of five positive differences (0.1..0.5) is positive
    assert c.mean_difference == pytest.approx(0.3)
    assert 0.1 <= c.interval[0] < 0.3 < c.interval[1] <= 0.5
    assert c.clear
    # exact Wilcoxon signed-rank, 5 positive differences of distinct size: P(W+ = 15) = 1/32, two-sided 2/32
    assert c.wilcoxon_p == pytest.approx(0.0625)
    assert report(c, "cand", "ref").endswith("verdict: A is clearly better (the interval is above 0)")


def test_the_same_shift_on_every_case_has_a_point_interval() -> None:
    a = result({"c1": (0, 0.7), "c2": (1, 0.55)})
    b = result({"c1": (0, 0.6), "c2": (1, 0.45)})

    c = compare(a, b)

    assert c.interval == pytest.approx((0.1, 0.1))
    assert c.clear


def test_identical_results_are_no_difference() -> None:
    a = result({"c1": (0, 0.7), "c2": (1, 0.5)})

    c = compare(a, a)

    assert (c.mean_difference, c.higher, c.lower, c.interval, c.wilcoxon_p) == (0.0, 0, 0, (0.0, 0.0), 1.0)
    assert not c.clear


@pytest.mark.parametrize(
    ("b", "message"),
    [
        ({"c1": (0, 0.5), "c2": (0, 0.5)}, "cases in different folds: [('c2', 'tumor')]"),
        ({"c1": (0, 0.5)}, "cases tested by one only: [('c2', 'tumor')]"),
    ],
)
def test_unpaired_results_are_refused(b: dict, message: str) -> None:
    a = result({"c1": (0, 0.6), "c2": (1, 0.4)})

    with pytest.raises(ValueError, match="not paired") as error:
        compare(a, result(b))

    assert message in str(error.value)


def test_command_writes_the_table_the_figures_and_the_plot(tmp_path, monkeypatch, capsys) -> None:
    paths = []
    for name, dice in (("crossval_ct_new", 0.7), ("crossval_ct_old", 0.5)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(result({"c1": (0, dice), "c2": (1, dice + 0.1)})))
        paths.append(str(path))
    monkeypatch.setattr(sys, "argv", ["compare_crossval", *paths, "--out", str(tmp_path)])

    main()

    written = json.loads((tmp_path / "compare_ct_new_vs_ct_old.json").read_text())
    assert written["mean_difference"] == pytest.approx(0.2)
    assert written["clear"] is True
    assert (tmp_path / "compare_ct_new_vs_ct_old.png").stat().st_size > 0
    table = (tmp_path / "compare_ct_new_vs_ct_old.txt").read_text()
    assert "c2        tumor      1  0.800   0.600  +0.200" in table
    assert table in capsys.readouterr().out


def test_command_names_both_files_when_they_are_not_paired(tmp_path, monkeypatch) -> None:
    a, b = tmp_path / "crossval_a.json", tmp_path / "crossval_b.json"
    a.write_text(json.dumps(result({"c1": (0, 0.6)})))
    b.write_text(json.dumps(result({"c2": (0, 0.6)})))
    monkeypatch.setattr(sys, "argv", ["compare_crossval", str(a), str(b), "--out", str(tmp_path)])

    with pytest.raises(SystemExit, match="crossval_b.json: the two cross-validations are not paired"):
        main()
