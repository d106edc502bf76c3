"""The cross-validation's tables for a model card."""

from __future__ import annotations

from benchmarks.crossval import card_tables


def row(fold: int, case: str, dice: float) -> dict:
    metrics = {"precision": 0.5, "recall": 1.0, "hd95_mm": 12.34, "surface_dice": 0.25}
    return {"fold": fold, "case": case, "label": "tumor", "dice": dice, **metrics}


def test_card_tables_show_every_fold_and_case_and_the_spread() -> None:
    result = {
        "cases": [row(1, "STS_004", 0.8), row(0, "STS_003", 0.4), row(0, "STS_001", 0.6)],
        "runs": [
            {"fold": 0, "test": ["STS_001", "STS_003"], "minutes": 47.26},
            {"fold": 1, "test": ["STS_004"], "minutes": 50.0},
        ],
        "fold_mean_dice": [0.5, 0.8],
        "mean_dice": 0.6,
        "median_dice": 0.6,
    }
    lines = card_tables(result).splitlines()

    assert lines[5] == "| case | label | fold | Dice | precision | recall | HD95 (mm) | surface Dice (2 mm) |"

    assert lines[2:4] == ["| 0 | STS_001, STS_003 | 0.500 | 47.3 |", "| 1 | STS_004 | 0.800 | 50.0 |"]
    assert lines[7:10] == [  # by fold, then case
        "| STS_001 | tumor | 0 | 0.600 | 0.500 | 1.000 | 12.3 | 0.250 |",
        "| STS_003 | tumor | 0 | 0.400 | 0.500 | 1.000 | 12.3 | 0.250 |",
        "| STS_004 | tumor | 1 | 0.800 | 0.500 | 1.000 | 12.3 | 0.250 |",
    ]
    # population standard deviation of 0.6, 0.4 and 0.8: sqrt(((0)^2 + 0.2^2 + 0.2^2) / 3) = 0.163
    assert lines[-1] == (
        "Mean test Dice 0.600 (median 0.600, standard deviation 0.163, lowest 0.400, highest 0.800) over 3 cases."
    )
