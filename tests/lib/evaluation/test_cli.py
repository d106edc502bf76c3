"""tumor-evaluate on folders: files matched by case name whatever their format, every output written."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lib.evaluation.cli import main
from lib.evaluation.report import COLUMNS
from tests.synthetic import oblique_direction

SPACING = (0.8, 1.2, 3.0)


def write(path: Path, array_ijk: np.ndarray, spacing=SPACING) -> None:
    image = sitk.GetImageFromArray(np.transpose(array_ijk.astype(np.uint8), (2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 4.0, 30.0))
    image.SetDirection(oblique_direction())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases with labels 1 (tumor) and 2 (edema): one predicted exactly, one with half the tumour."""
    labels, predictions = tmp_path / "labels", tmp_path / "predictions"
    truth = np.zeros((20, 16, 8), np.uint8)
    truth[2:10, 2:10, 2:6] = 1  # 256 voxels
    truth[12:16, 2:6, 2:4] = 2  # 32 voxels
    half = truth.copy()
    half[2:6, 2:10, 2:6] = 0  # the tumour's first half missed
    write(labels / "caseA.nii.gz", truth)
    write(predictions / "caseA.nrrd", truth)  # another format: matched by name
    write(labels / "caseB.nii.gz", truth)
    write(predictions / "caseB.nii.gz", half)
    (predictions / "notes.txt").write_text("not a volume")
    return labels, predictions


def test_folders_give_every_output_with_hand_computed_values(folders, tmp_path: Path) -> None:
    labels, predictions = folders
    out = tmp_path / "out"
    assert main(["--labels", str(labels), "--predictions", str(predictions), "--out", str(out),
                 "--label-names", "tumor,edema"]) == 0  # fmt: skip

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["case"], r["label"]) for r in rows] == [
        ("caseA", "tumor"), ("caseA", "edema"), ("caseB", "tumor"), ("caseB", "edema")
    ]  # fmt: skip
    tumour_b = rows[2]
    assert float(tumour_b["dice"]) == pytest.approx(2 * 128 / (256 + 128))
    assert (float(tumour_b["precision"]), float(tumour_b["recall"])) == (1.0, 0.5)
    voxel_ml = math.prod(SPACING) / 1000
    assert float(tumour_b["volume_ml_true"]) == pytest.approx(256 * voxel_ml)
    assert float(tumour_b["volume_ml_pred"]) == pytest.approx(128 * voxel_ml)
    # The missed half is 4 voxels deep along i (0.8 mm each): the reference's far face, 32 of its 184 surface
    # voxels (over 5%), is 3.2 mm from the prediction, the largest distance: the 95th percentile is 3.2 mm.
    assert float(tumour_b["hd95_mm"]) == pytest.approx(3.2, abs=1e-4)
    assert 0.5 < float(tumour_b["surface_dice"]) < 1.0  # that face and the 2.4 mm slice lie beyond 2 mm
    assert all(float(r["dice"]) == 1.0 for r in rows if r["case"] == "caseA" or r["label"] == "edema")

    summary = json.loads((out / "summary.json").read_text())
    dice = summary["labels"]["tumor"]["dice"]
    assert dice["n"] == 2 and dice["mean"] == pytest.approx((1 + 2 / 3) / 2) and dice["min"] == pytest.approx(2 / 3)
    assert summary["labels"]["tumor"]["lesions_pooled"] == {
        "tp": 2, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0
    }  # fmt: skip
    report = (out / "report.md").read_text()
    assert "| tumor | dice | 2 | 0.833 | 0.833 |" in report and "Surface Dice tolerance: 2.0 mm" in report
    assert (out / "dice_per_case.png").stat().st_size > 1000 and (out / "metrics_boxplot.png").stat().st_size > 1000


def test_a_missing_prediction_is_an_error_not_a_better_mean(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders
    (predictions / "caseB.nii.gz").unlink()
    assert main(["--labels", str(labels), "--predictions", str(predictions), "--out", str(tmp_path / "o")]) == 2
    assert "no prediction for 1 reference case(s): caseB" in capsys.readouterr().err


def test_a_prediction_on_another_grid_is_refused(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders
    write(predictions / "caseB.nii.gz", np.zeros((20, 16, 8)), spacing=(0.8, 1.2, 2.5))
    assert main(["--labels", str(labels), "--predictions", str(predictions), "--out", str(tmp_path / "o"),
                 "--label-names", "tumor,edema"]) == 2  # fmt: skip
    assert "case caseB: the prediction is not on the reference's grid: spacing" in capsys.readouterr().err


def test_unnamed_label_values_are_refused(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders
    assert main(["--labels", str(labels), "--predictions", str(predictions), "--out", str(tmp_path / "o")]) == 2
    assert "reference values [2] have no name; give --label-names" in capsys.readouterr().err


def test_the_installed_command_runs(folders, tmp_path: Path) -> None:
    labels, predictions = folders
    script = Path(sys.executable).parent / "tumor-evaluate"
    args = ["--labels", str(labels), "--predictions", str(predictions), "--out", str(tmp_path / "o")]
    done = subprocess.run([str(script), *args, "--label-names", "tumor,edema"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "tumor: 2 cases, mean Dice 0.833 (median 0.833)" in done.stdout
    bad = subprocess.run([str(script), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert bad.returncode == 2 and "give either --labels and --predictions, or --server and --studies" in bad.stderr


def _run(labels: Path, predictions: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["--labels", str(labels), "--predictions", str(predictions), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def test_a_prediction_value_without_a_name_is_refused_too(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders  # the references hold 1 and 2, both named here; a prediction holds 3
    extra = np.zeros((20, 16, 8), np.uint8)
    extra[0, 0, 0] = 3
    write(predictions / "caseA.nrrd", extra)
    code, err = _run(labels, predictions, tmp_path / "o", capsys, "--label-names", "tumor,edema")
    assert code == 2 and "case caseA: prediction values [3] have no name" in err


def test_damaged_or_non_label_predictions_are_refused(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders
    data = (predictions / "caseB.nii.gz").read_bytes()
    (predictions / "caseB.nii.gz").write_bytes(data[: len(data) // 2])  # a half-copied file reads as zeros
    code, err = _run(labels, predictions, tmp_path / "o", capsys, "--label-names", "tumor,edema")
    assert code == 2 and "caseB.nii.gz" in err and "damaged" in err
    floats = np.zeros((8, 16, 20), np.float32)  # (K, J, I)
    floats[2, 2, 2] = 0.5
    image = sitk.GetImageFromArray(floats)
    reference = sitk.ReadImage(str(labels / "caseB.nii.gz"))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(predictions / "caseB.nii.gz"))
    code, err = _run(labels, predictions, tmp_path / "o", capsys, "--label-names", "tumor,edema")
    assert code == 2 and "holds values [0.5]; a label holds whole numbers" in err


def test_a_label_named_twice_is_refused(folders, tmp_path: Path, capsys) -> None:
    labels, predictions = folders
    with pytest.raises(SystemExit) as stopped:
        _run(labels, predictions, tmp_path / "o", capsys, "--label-names", "tumor,tumor")
    assert stopped.value.code == 2 and "names a label twice" in capsys.readouterr().err


def test_a_server_that_refuses_the_login_is_a_message_not_a_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    from monailabel.client.client import MONAILabelClient, MONAILabelClientException

    def refuse(self, username, password):
        raise MONAILabelClientException(1, 'Status: 401; Response: {"detail": "wrong user name or password"}', 401)

    monkeypatch.setattr(MONAILabelClient, "auth_enabled", lambda self: True)
    monkeypatch.setattr(MONAILabelClient, "auth_token", refuse)
    monkeypatch.setattr("sys.stdin", io.StringIO("wrongpass1\n"))
    args = ["--server", "http://127.0.0.1:9", "--studies", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--username", "rev1", "--password-stdin"]) == 2
    assert "refused the request: Status: 401" in capsys.readouterr().err
