"""tumor-segment on a folder: the server's own auto segmentation of every image, resumable, streaming, and the
same labels from a local Dask cluster of 2 workers as from one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lib.config import AppConfig
from lib.infers import SegmentationInfer
from lib.segment.cases import CaseTask
from lib.segment.cli import JOURNAL, main, read_journal, run_batch, segment_on_dask
from lib.segment.work import DONE, EMPTY, FAILED
from lib.transforms.volume_io import read_volume
from tests.lib.conftest import TINY
from tests.support.server import ROOT
from tests.synthetic import write_case, write_sequences

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def trained(make_config, publish_weights) -> tuple[AppConfig, dict[str, str]]:
    """A tiny configuration with published weights, and the --conf that names it."""
    config: AppConfig = make_config(checkpoint="none")
    publish_weights(config)
    return config, {**TINY, "checkpoint": "none", "model_dir": config.model_dir}


@pytest.fixture
def archive(make_case, tmp_path: Path) -> Path:
    for i in range(3):
        make_case(f"case{i}", seed=i, folder=tmp_path / "archive")
    return tmp_path / "archive"


def journal(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / JOURNAL).read_text().splitlines()]


def test_every_image_gets_the_servers_label_on_its_own_grid(trained, archive: Path, tmp_path: Path) -> None:
    config, conf = trained
    output = tmp_path / "labels"

    counts = run_batch(str(archive), str(output), conf)

    assert counts[FAILED] == 0 and counts[DONE] + counts[EMPTY] == 3
    infer = SegmentationInfer(config)
    for i in range(3):
        image = archive / f"case{i}.nii.gz"
        expected, _ = infer({"image": str(image), "result_extension": ".nii.gz"})
        written = sitk.ReadImage(str(output / f"case{i}.nii.gz"))
        source = sitk.ReadImage(str(image))
        assert written.GetSize() == source.GetSize() and written.GetDirection() == pytest.approx(
            source.GetDirection(), abs=1e-6
        )
        assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(sitk.ReadImage(expected)))
        os.remove(expected)
    entries = {e["case"]: e for e in journal(output)}
    assert set(entries) == {f"case{i}.nii.gz" for i in range(3)}
    for case, entry in entries.items():
        voxels = int(np.count_nonzero(read_volume(str(output / case))[0]))
        assert entry["voxels"] == voxels and entry["status"] == (DONE if voxels else EMPTY)


def test_multi_sequence_cases_are_segmented_whole_under_their_case_names(
    make_config, publish_weights, tmp_path
) -> None:
    """With --conf sequences each case is one task labelled <case>.nii.gz, as the server lists a studies folder; it
    took every file for an image of its own (3 of 4 failed on their channel count) and never saw case folders."""
    names = ("t2f", "t1c")
    archive = tmp_path / "archive"
    flat = write_sequences(str(archive), "H", seed=1, sequences=names)
    nested = write_sequences(str(archive), "N", seed=2, sequences=names, layout="/")
    write_case(str(archive), "S", seed=3, channels=2, modality="mr", label_folder=str(tmp_path / "truth"))
    config: AppConfig = make_config(checkpoint="none", sequences="t2f,t1c", modality="mr")
    publish_weights(config)
    conf = {**TINY, "checkpoint": "none", "model_dir": config.model_dir, "sequences": "t2f,t1c", "modality": "mr"}
    output = tmp_path / "labels"

    counts = run_batch(str(archive), str(output), conf)

    assert counts[FAILED] == 0 and counts[DONE] + counts[EMPTY] == 3
    assert sorted(os.listdir(output)) == sorted(["H.nii.gz", "N.nii.gz", "S.nii.gz", JOURNAL])
    infer = SegmentationInfer(config)
    for case, image in (("H", flat.image_path), ("N", nested.image_path)):
        expected, _ = infer({"image": image, "result_extension": ".nii.gz"})
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(output / f"{case}.nii.gz")))
        assert np.array_equal(written, sitk.GetArrayFromImage(sitk.ReadImage(expected)))
        os.remove(expected)
    assert {e["case"] for e in journal(output)} == {"H-t2f.nii.gz", "N/t2f.nii.gz", "S.nii.gz"}


def test_a_second_run_resumes_where_the_first_ended(trained, archive: Path, tmp_path: Path) -> None:
    _, conf = trained
    output = tmp_path / "labels"
    run_batch(str(archive), str(output), conf)
    before = (output / "case0.nii.gz").stat().st_mtime_ns
    os.remove(output / "case1.nii.gz")  # as if the first run had been killed before case1 was complete
    (output / "case1.nii.gz.partial.nii.gz").write_bytes(b"cut short")

    counts = run_batch(str(archive), str(output), conf)

    assert sum(counts.values()) == 1 and journal(output)[-1]["case"] == "case1.nii.gz"
    assert (output / "case1.nii.gz").is_file() and (output / "case0.nii.gz").stat().st_mtime_ns == before


def test_an_unreadable_image_fails_alone_and_is_named(trained, archive: Path, tmp_path: Path) -> None:
    _, conf = trained
    (archive / "broken.nrrd").write_text("not an image")
    output = tmp_path / "labels"

    counts = run_batch(str(archive), str(output), conf)

    assert counts[FAILED] == 1 and counts[DONE] + counts[EMPTY] == 3
    assert read_journal(str(output / JOURNAL))["broken.nrrd"] == FAILED
    assert not (output / "broken.nii.gz").exists()


def test_the_command_exits_1_after_a_failure_and_2_without_weights(trained, archive, make_config, tmp_path) -> None:
    _, conf = trained
    (archive / "broken.nii.gz").write_text("not an image")
    args = [a for key, value in conf.items() for a in ("--conf", key, value)]
    command = [sys.executable, "-m", "lib.segment.cli", "--input", str(archive), "--output", str(tmp_path / "out")]
    done = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "broken.nii.gz failed" in done.stderr
    assert json.loads(done.stdout.splitlines()[-1])[FAILED] == 1

    untrained = {**conf, "model_dir": str(tmp_path / "empty-model")}
    args = [a for key, value in untrained.items() for a in ("--conf", key, value)]
    done = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "no weights to segment with" in done.stderr


def test_not_a_folder_nor_a_url_is_a_clear_error(trained, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a folder nor a DICOMweb URL"):
        run_batch(str(tmp_path / "missing"), str(tmp_path / "out"), trained[1])


def test_an_unreachable_pacs_or_an_output_that_is_a_file_is_a_message(trained, archive, tmp_path, capsys) -> None:
    args = [a for key, value in trained[1].items() for a in ("--conf", key, value)]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for source, output, message in [
        (str(archive), str(a_file), "File exists"),
        ("http://127.0.0.1:9/dicom-web", str(tmp_path / "out"), "did not serve the images"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            main(["--input", source, "--output", output, *args])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def _echo(task: CaseTask, conf, threads):  # a cheap stand-in for segment(), run by Dask workers
    from lib.segment.work import Outcome

    return Outcome(task.case, DONE, 0.0)


def test_dask_submission_streams_a_bounded_window_of_cases() -> None:
    from distributed import Client

    pulled: list[int] = []

    def cases() -> Iterator[CaseTask]:
        for i in range(50):
            pulled.append(i)
            yield CaseTask(f"case{i}")

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        outcomes = segment_on_dask(cases(), (), client, None, work=_echo)
        first = next(outcomes)
        assert len(pulled) <= 3  # 2 in flight per worker thread, plus the one submitted as the first ended
        rest = list(outcomes)
    assert sorted(o.case for o in [first, *rest]) == sorted(f"case{i}" for i in range(50))


def test_a_local_dask_cluster_of_2_workers_writes_the_same_labels(trained, archive: Path, tmp_path: Path) -> None:
    _, conf = trained
    run_batch(str(archive), str(tmp_path / "one"), conf)

    counts = run_batch(str(archive), str(tmp_path / "two"), conf, workers=2)

    assert counts[FAILED] == 0 and counts[DONE] + counts[EMPTY] == 3
    for i in range(3):
        one, _ = read_volume(str(tmp_path / "one" / f"case{i}.nii.gz"))
        two, _ = read_volume(str(tmp_path / "two" / f"case{i}.nii.gz"))
        assert np.mean(one == two) > 0.999  # the same weights and pipeline (thread counts may flip a boundary voxel)
