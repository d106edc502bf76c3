"""The datastore refuses unusable uploads with a 4xx and leaves itself unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fastapi import HTTPException
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.config import AppConfig
from lib.datastore import VOLUME_EXTENSIONS, TumorDatastore, tumor_datastore
from lib.datastore.validation import InvalidUploadError
from lib.transforms.volume_io import read_case, read_volume
from tests.synthetic import SyntheticCase, write_case, write_sequences

CaseWriter = Callable[..., SyntheticCase]


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    """A studies folder holding one synthetic image ``case0`` (its label is kept outside)."""
    folder = tmp_path / "studies"
    write_case(str(folder), "case0", seed=0, label_folder=str(tmp_path / "source-labels"))
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def label_file(array: np.ndarray, image_path: str, path: Path) -> str:
    """Write an (I, J, K) label with the spacing, origin and direction of ``image_path``."""
    image = sitk.ReadImage(image_path)
    label = sitk.GetImageFromArray(np.transpose(array.astype(np.uint8), (2, 1, 0)))
    label.SetSpacing(image.GetSpacing())
    label.SetOrigin(image.GetOrigin())
    label.SetDirection(image.GetDirection())
    sitk.WriteImage(label, str(path))
    return str(path)


def test_existing_image_is_listed(studies: Path, config: AppConfig) -> None:
    datastore = TumorDatastore(str(studies), config)
    assert datastore.list_images() == ["case0"]
    assert datastore.get_unlabeled_images() == ["case0"]
    assert datastore.datalist() == []


def test_add_corrupt_image_is_refused_and_changes_nothing(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    before = snapshot(studies)
    corrupt = tmp_path / "upload.nii.gz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))

    with pytest.raises(HTTPException) as error:
        datastore.add_image("upload", str(corrupt), {})

    assert error.value.status_code == 422
    assert "image refused: cannot read upload.nii.gz" in error.value.detail
    assert datastore.list_images() == ["case0"]
    assert snapshot(studies) == before


def test_add_image_with_wrong_channels_is_refused(studies: Path, config: AppConfig, make_case: CaseWriter) -> None:
    datastore = TumorDatastore(str(studies), config)
    before = snapshot(studies)
    upload = make_case("vector", channels=2)

    with pytest.raises(HTTPException) as error:
        datastore.add_image("vector", upload.image_path, {})

    assert error.value.status_code == 422
    assert "2 channel(s); this app's model takes 1" in error.value.detail
    assert datastore.list_images() == ["case0"]
    assert snapshot(studies) == before


@pytest.mark.parametrize("image_id", ["../evil", "sub/evil", ".hidden", "..\\evil"])
def test_add_image_refuses_path_like_id(studies: Path, config: AppConfig, case: SyntheticCase, image_id: str) -> None:
    datastore = TumorDatastore(str(studies), config)
    before = snapshot(studies.parent)

    with pytest.raises(HTTPException) as error:
        datastore.add_image(image_id, case.image_path, {})

    assert error.value.status_code == 422
    assert "must be a plain name" in error.value.detail
    assert datastore.list_images() == ["case0"]
    assert snapshot(studies.parent) == before


def test_add_valid_image(studies: Path, config: AppConfig, make_case: CaseWriter) -> None:
    datastore = TumorDatastore(str(studies), config)
    upload = make_case("upload", seed=3)

    assert datastore.add_image("case1", upload.image_path, {"source": "test"}) == "case1"

    assert sorted(datastore.list_images()) == ["case0", "case1"]
    assert datastore.get_image_info("case1")["source"] == "test"
    stored, _ = read_volume(datastore.get_image_uri("case1"))
    assert np.array_equal(stored, upload.image)


def test_save_label_with_wrong_shape_is_refused(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    image_path = datastore.get_image_uri("case0")
    before = snapshot(studies)
    wrong = label_file(np.ones((40, 48, 20)), image_path, tmp_path / "wrong.nii.gz")

    with pytest.raises(HTTPException) as error:
        datastore.save_label("case0", wrong, DefaultLabelTag.FINAL, {})

    assert error.value.status_code == 422
    assert "label refused: label does not lie on its image's grid: size" in error.value.detail
    assert list((studies / "labels" / "final").iterdir()) == []
    assert datastore.datalist() == []
    assert snapshot(studies) == before


def test_save_label_with_value_above_labels_is_refused(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    image_path = datastore.get_image_uri("case0")
    label = label_file(np.full((48, 40, 20), 2), image_path, tmp_path / "two.nii.gz")

    with pytest.raises(HTTPException) as error:
        datastore.save_label("case0", label, DefaultLabelTag.FINAL, {})

    assert error.value.status_code == 422
    assert "label holds values [2]; accepted values are 0 (background) to 1" in error.value.detail
    assert list((studies / "labels" / "final").iterdir()) == []


def test_save_label_stores_label_on_image_grid(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    image_path = datastore.get_image_uri("case0")
    array = np.zeros((48, 40, 20), np.uint8)
    array[10:20, 5:15, 2:8] = 1
    # A label whose header differs from the image's by rounding only is stored on the image's exact grid.
    upload = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))
    upload.CopyInformation(sitk.ReadImage(image_path))
    upload.SetOrigin(tuple(o + 1e-4 for o in upload.GetOrigin()))
    sitk.WriteImage(upload, str(tmp_path / "label.nii.gz"))

    datastore.save_label("case0", str(tmp_path / "label.nii.gz"), DefaultLabelTag.FINAL, {})

    [item] = datastore.datalist()
    assert item["image"] == image_path
    stored = sitk.ReadImage(item["label"])
    image = sitk.ReadImage(image_path)
    assert np.array_equal(np.transpose(sitk.GetArrayFromImage(stored), (2, 1, 0)), array)
    assert np.allclose(stored.GetOrigin(), image.GetOrigin(), atol=1e-6)
    assert np.allclose(stored.GetDirection(), image.GetDirection(), atol=1e-6)
    assert datastore.get_unlabeled_images() == []


def test_save_label_remaps_values_by_segment_name(
    studies: Path, make_config: Callable[..., AppConfig], tmp_path: Path
) -> None:
    datastore = TumorDatastore(str(studies), make_config(labels="tumor,edema"))
    image_path = datastore.get_image_uri("case0")
    segments = np.zeros((48, 40, 20), np.uint8)
    segments[5:15] = 1  # 3D Slicer's first segment: edema
    segments[30:40] = 2  # second segment: tumor
    upload = label_file(segments, image_path, tmp_path / "segments.nii.gz")
    info = {"label_info": [{"name": "Edema", "idx": 1}, {"name": "tumor", "idx": 2}]}

    datastore.save_label("case0", upload, DefaultLabelTag.FINAL, info)

    stored, _ = read_volume(datastore.get_label_uri("case0", DefaultLabelTag.FINAL))
    expected = np.zeros_like(segments)
    expected[5:15] = 2  # edema is the app's second label
    expected[30:40] = 1
    assert np.array_equal(stored[0], expected)


def test_save_label_with_unknown_segment_is_refused(
    studies: Path, make_config: Callable[..., AppConfig], tmp_path: Path
) -> None:
    datastore = TumorDatastore(str(studies), make_config(labels="tumor,edema"))
    upload = label_file(np.ones((48, 40, 20)), datastore.get_image_uri("case0"), tmp_path / "s.nii.gz")

    with pytest.raises(HTTPException) as error:
        datastore.save_label("case0", upload, DefaultLabelTag.FINAL, {"label_info": [{"name": "liver", "idx": 1}]})

    assert error.value.status_code == 422
    assert "segment 'liver' is not a label of this app; accepted: tumor, edema" in error.value.detail
    assert datastore.datalist() == []


def test_save_label_for_unknown_image_is_not_found(studies: Path, config: AppConfig, case: SyntheticCase) -> None:
    datastore = TumorDatastore(str(studies), config)
    before = snapshot(studies)

    with pytest.raises(HTTPException) as error:
        datastore.save_label("missing", case.label_path, DefaultLabelTag.FINAL, {})

    assert error.value.status_code == 404
    assert "'missing' is not in the datastore" in error.value.detail
    assert snapshot(studies) == before


SEQUENCES = "t2f,t1c,t1n,t2w"


def test_multi_sequence_cases_are_one_image_each(tmp_path: Path, make_config, caplog) -> None:
    """Flat files in BraTS 2023 and 2021 naming, one folder per case, and a stacked file: one image per case, whose
    file is the first sequence (what Slicer downloads and annotators label)."""
    folder = tmp_path / "studies"
    names = ("t2f", "t1c", "t1n", "t2w")
    dash = write_sequences(str(folder), "BraTS-GLI-00001-000", seed=1, sequences=names, layout="-")
    under = write_sequences(str(folder), "BraTS2021_01646", seed=2, sequences=names, layout="_")
    nested = write_sequences(str(folder), "case3", seed=3, sequences=names, layout="/")
    write_case(str(folder), "stacked", seed=4, channels=4, modality="mr", label_folder=str(tmp_path / "l"))
    write_sequences(str(folder), "incomplete", seed=5, sequences=names[:2], layout="-")
    config = make_config(sequences=SEQUENCES, modality="mr")
    assert config.plan.channels == 4

    datastore = TumorDatastore(str(folder), config)

    assert sorted(datastore.list_images()) == [
        "BraTS-GLI-00001-000",
        "BraTS2021_01646",
        "case3",
        "incomplete",
        "stacked",
    ]
    assert datastore.get_image_uri("BraTS-GLI-00001-000") == os.path.realpath(dash.image_path)
    assert datastore.get_image_uri("BraTS2021_01646") == os.path.realpath(under.image_path)
    assert datastore.get_image_uri("case3") == os.path.realpath(nested.image_path)
    assert "case incomplete lacks sequence(s) t1n, t2w" in caplog.text
    # The name 3D Slicer downloads an image to (Next Sample's reply) is a file name, never a path.
    assert datastore.get_image_info("case3")["name"] == "case3-t2f.nii.gz"
    assert datastore.get_image_info("BraTS2021_01646")["name"] == "BraTS2021_01646_t2f.nii.gz"

    # A label lies on the first sequence's grid and is listed after a restart.
    label = label_file(dash.label, dash.image_path, tmp_path / "label.nii.gz")
    datastore.save_label("BraTS-GLI-00001-000", label, DefaultLabelTag.FINAL, {})
    again = TumorDatastore(str(folder), config)
    assert [os.path.basename(d["image"]) for d in again.datalist()] == ["BraTS-GLI-00001-000-t2f.nii.gz"]

    # One sequence uploaded alone (the server saves an upload as <id>.<ext>) is refused, naming what the app needs.
    upload = tmp_path / "single.nii.gz"
    upload.write_bytes(Path(dash.image_path).read_bytes())
    with pytest.raises(HTTPException) as refused:
        datastore.add_image("single", str(upload), {})
    assert refused.value.status_code == 422
    assert "takes the sequences t2f, t1c, t1n, t2w as 4 channels" in refused.value.detail

    # An id naming one of a case's sequences would be stored over that file (a labelled case lost its t2w).
    stacked = folder / "stacked.nii.gz"
    before = Path(folder / "BraTS-GLI-00001-000-t2w.nii.gz").read_bytes()
    for image_id in ("BraTS-GLI-00001-000-t2w", "other_t1c"):
        with pytest.raises(HTTPException) as refused:
            datastore.add_image(image_id, str(stacked), {})
        assert refused.value.status_code == 422 and "sequence of case" in refused.value.detail
    assert Path(folder / "BraTS-GLI-00001-000-t2w.nii.gz").read_bytes() == before
    # A stacked upload under a case of sequence files would sit beside them under one id (the message told the
    # client to "replace it with a /t2f.nii.gz", which no upload can).
    for image_id in ("case3", "BraTS2021_01646"):
        with pytest.raises(HTTPException) as refused:
            datastore.add_image(image_id, str(stacked), {})
        assert refused.value.status_code == 409 and "is a case of separate sequence files" in refused.value.detail
    assert not (folder / "case3.nii.gz").exists() and not (folder / "BraTS2021_01646.nii.gz").exists()

    # Deleting a case removes all its sequences: left behind, they would join a new case of the same name.
    datastore.remove_image("BraTS-GLI-00001-000")
    datastore.remove_image("case3")
    assert not list(folder.glob("BraTS-GLI-00001-000*")) and not (folder / "case3").exists()
    assert (folder / "BraTS2021_01646_t2w.nii.gz").exists()  # the other cases are untouched


def test_cases_without_their_first_sequence_are_named_in_the_log(tmp_path: Path, make_config, caplog) -> None:
    """Not listed (annotators label the first sequence), but no longer silently: the log says which and why."""
    folder = tmp_path / "studies"
    names = ("t2f", "t1c", "t1n")
    write_sequences(str(folder), "whole", seed=1, sequences=names)
    write_sequences(str(folder), "headless", seed=2, sequences=names[1:], layout="_")  # no headless_t2f
    write_sequences(str(folder), "brats", seed=3, sequences=("brats-t2f", "brats-t1c"), layout="/")  # BraTS's own
    (folder / "notes").mkdir()  # a folder of no volumes is not a case
    config = make_config(sequences="t2f,t1c,t1n", modality="mr")

    datastore = TumorDatastore(str(folder), config, auto_reload=False)
    datastore.refresh()

    assert datastore.list_images() == ["whole"]
    assert "case headless has no t2f file (needs t2f, t1c, t1n): not listed until it is added" in caplog.text
    assert "folder brats holds no t2f file (brats-t1c.nii.gz, brats-t2f.nii.gz;" in caplog.text
    assert "notes" not in caplog.text
    assert caplog.text.count("case headless has no t2f file") == 1  # once, however often the folder is listed


def test_two_files_of_one_id_list_one_and_name_the_other(tmp_path: Path, config: AppConfig, caplog) -> None:
    """``P.nii.gz`` and ``P.nrrd``: MONAI Label listed whichever the folder gave last (the served file could change
    between restarts) and said nothing."""
    folder = tmp_path / "studies"
    write_case(str(folder), "P", seed=1, label_folder=str(tmp_path / "labels"))
    sitk.WriteImage(sitk.ReadImage(str(folder / "P.nii.gz")), str(folder / "P.nrrd"))

    datastore = TumorDatastore(str(folder), config, auto_reload=False, extensions=VOLUME_EXTENSIONS)

    assert datastore.list_images() == ["P"] and datastore.get_image_uri("P").endswith("P.nii.gz")
    assert "P.nrrd in the studies folder has the id 'P' of P.nii.gz: it is not listed" in caplog.text
    (folder / "Q.nrrd").write_bytes((folder / "P.nrrd").read_bytes())
    (folder / "Q.nii.gz").write_bytes((folder / "P.nii.gz").read_bytes())
    datastore.refresh()
    assert datastore.get_image_uri("P").endswith("P.nii.gz")  # the one listed stays
    assert "Q.nrrd in the studies folder has the id 'Q' of Q.nii.gz" in caplog.text
    for name in ("P.nii.gz", "Q.nii.gz"):
        (folder / name).unlink()
    datastore.refresh()
    assert sorted(datastore.list_images()) == ["P", "Q"] and datastore.get_image_uri("P").endswith("P.nrrd")


def test_a_stacked_file_and_a_case_folder_of_one_id_list_one(tmp_path: Path, make_config, caplog) -> None:
    folder = tmp_path / "studies"
    write_sequences(str(folder), "P", seed=1, sequences=("t2f", "t1c"), layout="/")
    write_case(str(folder), "P", seed=2, channels=2, modality="mr", label_folder=str(tmp_path / "labels"))

    datastore = TumorDatastore(str(folder), make_config(sequences="t2f,t1c", modality="mr"), auto_reload=False)

    assert datastore.list_images() == ["P"]
    assert "has the id 'P' of" in caplog.text and "it is not listed (rename one of them)" in caplog.text


def test_a_studies_folder_of_links_keeps_each_cases_name(tmp_path: Path, config: AppConfig) -> None:
    """Links into an archive whose files share one name (``STS_001/CT_image.nii.gz``) are still distinct cases:
    the training split and the checkpoints name cases by these file names."""
    studies, final = tmp_path / "studies", tmp_path / "studies" / "labels" / "final"
    final.mkdir(parents=True)
    for i in range(3):
        archive = tmp_path / "archive" / f"STS_00{i}"
        write_case(str(archive), "CT_image", seed=i, label_folder=str(archive / "mask"))
        (studies / f"STS_00{i}.nii.gz").symlink_to(archive / "CT_image.nii.gz")
        (final / f"STS_00{i}.nii.gz").symlink_to(archive / "mask" / "CT_image.nii.gz")

    pairs = TumorDatastore(str(studies), config).datalist()

    assert [(os.path.basename(p["image"]), os.path.basename(p["label"])) for p in sorted(pairs, key=str)] == [
        (f"STS_00{i}.nii.gz", f"STS_00{i}.nii.gz") for i in range(3)
    ]
    assert all(p["image"].startswith(str(studies)) and p["label"].startswith(str(final)) for p in pairs)
    assert read_volume(pairs[0]["image"])[0].shape[1:] == (48, 40, 20)  # the link is read through
    relative = TumorDatastore(str(studies), config).datalist(full_path=False)
    assert sorted(p["image"] for p in relative) == [f"STS_00{i}.nii.gz" for i in range(3)]


def test_dataset_archive_holds_the_labelled_cases(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    source = write_case(str(tmp_path / "uploads"), "case1", seed=1, label_folder=str(tmp_path / "labels1"))
    datastore.add_image("case1", source.image_path, {})
    for case_id, label in (("case0", tmp_path / "source-labels" / "case0.nii.gz"), ("case1", source.label_path)):
        datastore.save_label(case_id, str(label), DefaultLabelTag.FINAL, {})

    path = datastore.get_dataset_archive(None)
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        stored = archive.read("label/case1.nii.gz")
    os.remove(path)
    assert names == [
        "image/case0.nii.gz",
        "image/case1.nii.gz",
        "label/case0.nii.gz",
        "label/case1.nii.gz",
        "metadata.json",
    ]
    assert stored == (studies / "labels" / "final" / "case1.nii.gz").read_bytes()
    limited = datastore.get_dataset_archive(1)
    with zipfile.ZipFile(limited) as archive:
        assert len([n for n in archive.namelist() if n.startswith("image/")]) == 1
    os.remove(limited)


def test_dataset_archive_of_multi_sequence_cases_holds_every_sequence(tmp_path: Path, make_config) -> None:
    """Each case's sequences, laid out as in the studies folder: the archive's ``image/`` is itself a studies folder.
    It held only the first sequence, and one-folder-per-case files all under one name (``image/t2f.nii.gz``)."""
    folder = tmp_path / "studies"
    names = ("t2f", "t1c", "t1n", "t2w")
    cases = {
        "case1": write_sequences(str(folder), "case1", seed=1, sequences=names, layout="/"),
        "case2": write_sequences(str(folder), "case2", seed=2, sequences=names, layout="/"),
        "BraTS-GLI-00001-000": write_sequences(str(folder), "BraTS-GLI-00001-000", seed=3, sequences=names),
    }
    datastore = TumorDatastore(str(folder), make_config(sequences=SEQUENCES, modality="mr"), auto_reload=False)
    for case_id, case in cases.items():
        label = label_file(case.label, case.image_path, tmp_path / f"{case_id}-label.nii.gz")
        datastore.save_label(case_id, label, DefaultLabelTag.FINAL, {})

    path = datastore.get_dataset_archive(None)
    with zipfile.ZipFile(path) as archive:
        names_in = archive.namelist()
        stored = {n: archive.read(n) for n in names_in if n.startswith("image/")}
    os.remove(path)

    expected = [f"image/case{i}/{s}.nii.gz" for i in (1, 2) for s in names]
    expected += [f"image/BraTS-GLI-00001-000-{s}.nii.gz" for s in names]
    assert sorted(stored) == sorted(expected)
    assert len(names_in) == len(set(names_in)) == len(expected) + 3 + 1  # the sequences, 3 labels, the metadata
    assert stored["image/case2/t1n.nii.gz"] == (folder / "case2" / "t1n.nii.gz").read_bytes()
    assert stored["image/BraTS-GLI-00001-000-t2w.nii.gz"] == (folder / "BraTS-GLI-00001-000-t2w.nii.gz").read_bytes()


def test_dataset_archive_of_a_vanished_file_is_a_409_and_leaves_no_file(
    studies: Path, config: AppConfig, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temporary"))
    os.makedirs(tempfile.tempdir)
    datastore = TumorDatastore(str(studies), config, auto_reload=False)  # it has not seen the file go
    datastore.save_label("case0", str(tmp_path / "source-labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, {})
    os.remove(studies / "case0.nii.gz")

    with pytest.raises(HTTPException) as error:
        datastore.get_dataset_archive(None)
    assert error.value.status_code == 409 and "has gone from the studies folder" in error.value.detail
    assert os.listdir(tempfile.tempdir) == []


def test_uploads_while_the_folder_is_refreshed_keep_the_datastore_in_step(
    studies: Path, config: AppConfig, tmp_path: Path
) -> None:
    # The folder watcher's refresh iterated over the images while uploads added to them: its thread ended with
    # "dictionary changed size during iteration", and the server no longer saw files added or removed.
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    source = write_case(str(tmp_path / "uploads"), "source", seed=2)
    errors: list[BaseException] = []
    done = threading.Event()

    def refresh() -> None:
        while not done.is_set():
            try:
                datastore.refresh()
            except BaseException as e:  # noqa: BLE001 - collected for the assert
                errors.append(e)

    def upload(first: int) -> None:
        for i in range(first, first + 15):
            datastore.add_image(f"burst{i}", source.image_path, {})

    refresher = threading.Thread(target=refresh)
    refresher.start()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(upload, (0, 100, 200)))
    done.set()
    refresher.join()
    assert errors == []
    datastore.refresh()
    expected = {"case0", *(f"burst{i}" for first in (0, 100, 200) for i in range(first, first + 15))}
    assert set(datastore.list_images()) == expected


def test_an_image_replaced_while_its_label_is_checked_never_leaves_the_label_on_another_grid(
    studies: Path, config: AppConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two annotators: one submits a label for an unlabelled image while the other uploads a new image under its id.
    # The image upload is made to arrive while the label is being checked against the old image.
    datastore = TumorDatastore(str(studies), config)
    small = write_case(str(tmp_path / "small"), "small", seed=3, label_folder=str(tmp_path / "small-labels"))
    large = write_case(str(tmp_path / "large"), "large", seed=4, size=(56, 48, 24))
    datastore.add_image("race", small.image_path, {})
    checking, replaced = threading.Event(), threading.Event()
    check = tumor_datastore.app_label

    def slow_check(*args: object, **kwargs: object) -> np.ndarray:
        array = check(*args, **kwargs)  # checked against the small image
        checking.set()
        replaced.wait(1.0)  # the upload of the large image runs now, unless the datastore holds it off
        return array

    def replace_image() -> int | str:
        assert checking.wait(10)
        try:
            datastore.add_image("race", large.image_path, {})
            return "replaced"
        except HTTPException as e:
            return e.status_code
        finally:
            replaced.set()

    monkeypatch.setattr(tumor_datastore, "app_label", slow_check)
    with ThreadPoolExecutor(2) as pool:
        labelled = pool.submit(datastore.save_label, "race", small.label_path, DefaultLabelTag.FINAL, {})
        replacing = pool.submit(replace_image)
        labelled.result()
        assert replacing.result() == 409  # the label came first: its image is not replaced
    image = read_volume(datastore.get_image_uri("race"))[1]
    label = read_volume(datastore.get_label_uri("race", DefaultLabelTag.FINAL))[1]
    assert label.size == image.size == read_volume(small.image_path)[1].size


def test_replacing_an_unlabelled_image_keeps_the_earlier_file(studies: Path, config: AppConfig, tmp_path: Path) -> None:
    datastore = TumorDatastore(str(studies), config)
    before = (studies / "case0.nii.gz").read_bytes()
    other = write_case(str(tmp_path / "other"), "other", seed=5)

    datastore.add_image("case0", other.image_path, {})

    assert (studies / "case0.nii.gz").read_bytes() == Path(other.image_path).read_bytes()
    kept = list((studies / ".replaced").iterdir())
    assert len(kept) == 1 and kept[0].name.endswith("_case0.nii.gz") and kept[0].read_bytes() == before
    datastore.refresh()
    assert datastore.list_images() == ["case0"]  # the kept file is not an image of the datastore


def test_readers_never_see_a_half_reloaded_datastore(studies: Path, config: AppConfig) -> None:
    # Another process (a batch job) rewrites datastore_v2.json while this one reads image paths: MONAI Label's
    # reload left the folder unset for a moment, and a batch job read images from the server's working folder;
    # its clean-up emptied the image list before refilling it.
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    expected = os.path.realpath(studies / "case0.nii.gz")
    seen: set[str] = set()
    counts: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(datastore.get_image_uri("case0"))
            counts.add(len(datastore.list_images()))

    reader = threading.Thread(target=read)
    reader.start()
    config_file = studies / "datastore_v2.json"
    for i in range(300):
        os.utime(config_file, ns=(i * 10**9, i * 10**9))  # "rewritten by another process"
        datastore._init_from_datastore_file()
        datastore._remove_non_existing()
    done.set()
    reader.join()
    assert seen == {expected} and counts == {1}


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"objects": {"case0": {"image": 5}}}', b'{"name": "x", "obj'])
def test_a_damaged_datastore_file_is_kept_and_the_list_rebuilt(
    studies: Path, config: AppConfig, tmp_path: Path, content: bytes
) -> None:
    # A power cut while MONAI Label rewrote the file in place left one the server could not start with.
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    datastore.save_label("case0", str(tmp_path / "source-labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, {})
    (studies / "datastore_v2.json").write_bytes(content)

    again = TumorDatastore(str(studies), config, auto_reload=False)

    assert again.list_images() == ["case0"] and again.get_labeled_images() == ["case0"]
    kept = [p for p in studies.iterdir() if p.name.startswith("datastore_v2.json.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == content
    assert json.loads((studies / "datastore_v2.json").read_text())["objects"].keys() == {"case0"}


def test_a_second_label_keeps_the_first_and_the_info_matches_the_stored_values(
    tmp_path: Path, make_config: Callable[..., AppConfig]
) -> None:
    config = make_config(labels="tumor,edema")
    folder = tmp_path / "studies"
    case = write_case(str(folder), "case0", seed=0, label_folder=str(tmp_path / "source-labels"))
    datastore = TumorDatastore(str(folder), config, auto_reload=False)
    first = label_file(case.label, case.image_path, tmp_path / "first.nii.gz")
    second = label_file(case.label * 2, case.image_path, tmp_path / "second.nii.gz")  # drawn as value 2

    datastore.save_label("case0", first, DefaultLabelTag.FINAL, {"user": "ann1"})
    # 3D Slicer numbers segments in its own order: value 2 is named "tumor" here.
    swapped = {"label_info": [{"name": "edema", "idx": 1}, {"name": "tumor", "idx": 2}]}
    datastore.save_label("case0", second, DefaultLabelTag.FINAL, swapped)

    stored = read_volume(datastore.get_label_uri("case0", DefaultLabelTag.FINAL))[0][0]
    assert set(np.unique(stored).tolist()) == {0, 1}  # tumour stored as the app's value 1
    info = datastore.get_label_info("case0", DefaultLabelTag.FINAL)
    assert info["label_info"] == [{"name": "tumor", "idx": 1}, {"name": "edema", "idx": 2}]  # as stored, not as sent
    kept = list((folder / "labels" / "final" / ".replaced").iterdir())
    assert len(kept) == 1 and read_volume(str(kept[0]))[0][0].sum() == case.label.sum()  # the first label


def test_info_written_by_another_process_is_seen(studies: Path, config: AppConfig) -> None:
    # A scoring job writes each image's score into the datastore file from its own process; the server must read it.
    server = TumorDatastore(str(studies), config, auto_reload=True)  # watches the folder, as the server does
    job = TumorDatastore(str(studies), config, auto_reload=False)
    try:
        job.update_image_info("case0", {"epistemic_entropy": 0.25})
        deadline = time.monotonic() + 10
        while server.get_image_info("case0").get("epistemic_entropy") != 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.get_image_info("case0").get("epistemic_entropy") == 0.25
    finally:
        server._observer.stop()


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_case_folders_added_renamed_or_removed_while_watched_are_seen(tmp_path: Path, make_config) -> None:
    """MONAI Label's watcher matched only the studies folder's own files: a case folder copied in stayed unlisted,
    and one renamed or moved away stayed listed (its requests failed), until some other file changed."""
    folder, elsewhere = tmp_path / "studies", tmp_path / "elsewhere"
    names = ("t2f", "t1c")
    write_sequences(str(folder), "case1", seed=1, sequences=names, layout="/")
    write_sequences(str(elsewhere), "new", seed=2, sequences=names, layout="/")
    write_sequences(str(elsewhere), "moved", seed=3, sequences=names, layout="/")
    server = TumorDatastore(str(folder), make_config(sequences="t2f,t1c", modality="mr"), auto_reload=True)
    try:
        assert server.list_images() == ["case1"]
        shutil.copytree(elsewhere / "new", folder / "new")  # copied in: a folder, then its files
        assert _wait_for(lambda: sorted(server.list_images()) == ["case1", "new"])
        os.rename(elsewhere / "moved", folder / "moved")  # moved in whole
        assert _wait_for(lambda: sorted(server.list_images()) == ["case1", "moved", "new"])
        os.rename(folder / "case1", folder / "case9")  # renamed
        assert _wait_for(lambda: sorted(server.list_images()) == ["case9", "moved", "new"])
        os.rename(folder / "new", elsewhere / "gone")  # moved away whole
        assert _wait_for(lambda: sorted(server.list_images()) == ["case9", "moved"])
        os.rename(folder / "moved" / "t2f.nii.gz", elsewhere / "t2f.nii.gz")  # its first sequence removed
        assert _wait_for(lambda: server.list_images() == ["case9"])
    finally:
        server._observer.stop()


def _cut_short(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])  # a copy cut short: ITK reads the missing voxels as zeros


def test_a_cut_short_studies_image_is_refused_and_a_whole_one_checked_once(
    studies: Path, config: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    checked: list[str] = []
    check = tumor_datastore.check_file
    monkeypatch.setattr(tumor_datastore, "check_file", lambda path, *a: checked.append(path) or check(path, *a))

    datastore.check_complete("case0")
    datastore.check_complete("case0")
    assert checked == [datastore.get_image_uri("case0")]  # once per version of the file

    _cut_short(datastore.get_image_uri("case0"))
    with pytest.raises(InvalidUploadError, match="case0.nii.gz"):
        datastore.check_complete("case0")


def test_a_damaged_image_is_not_offered_or_labelled_until_replaced(
    studies: Path, config: AppConfig, tmp_path: Path
) -> None:
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    whole = Path(datastore.get_image_uri("case0")).read_bytes()
    _cut_short(datastore.get_image_uri("case0"))
    assert datastore.get_unlabeled_images() == ["case0"]  # not known to be damaged before it is checked
    with pytest.raises(InvalidUploadError):
        datastore.check_complete("case0")
    assert datastore.get_unlabeled_images() == []
    with pytest.raises(HTTPException) as refused:
        datastore.save_label("case0", str(tmp_path / "source-labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, {})
    assert refused.value.status_code == 422 and "damaged in the studies folder" in refused.value.detail

    Path(datastore.get_image_uri("case0")).write_bytes(whole)  # replaced: a new version of the file
    assert datastore.get_unlabeled_images() == ["case0"]
    datastore.save_label("case0", str(tmp_path / "source-labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, {})


def test_a_cut_short_sequence_of_a_case_is_refused(tmp_path: Path, make_config) -> None:
    folder = tmp_path / "studies"
    case = write_sequences(str(folder), "case1", seed=1, sequences=("t2f", "t1c", "t1n", "t2w"), layout="-")
    datastore = TumorDatastore(str(folder), make_config(sequences=SEQUENCES, modality="mr"), auto_reload=False)
    datastore.check_complete("case1")

    write_sequences(str(folder), "case2", seed=2, sequences=("t2f", "t1c", "t1n", "t2w"), layout="/")
    datastore.refresh()
    assert sorted(datastore.get_unlabeled_images()) == ["case1", "case2"]

    _cut_short(case.image_path.replace("-t2f", "-t1n"))  # not the first sequence, which Slicer shows
    with pytest.raises(InvalidUploadError, match="case1-t1n.nii.gz"):
        datastore.check_complete("case1")
    # Next Sample leaves the case out, as it does one whose first file is damaged (it picked case1 again and
    # again, and answered 409 "every unlabelled image is damaged"), until the file is replaced.
    assert datastore.get_unlabeled_images() == ["case2"]
    replaced = case.image_path.replace("-t2f", "-t1n")
    Path(replaced).write_bytes((folder / "case2" / "t1n.nii.gz").read_bytes())
    assert sorted(datastore.get_unlabeled_images()) == ["case1", "case2"]


def test_deleting_a_case_of_links_removes_the_links_never_the_archive(tmp_path: Path, make_config) -> None:
    """A studies folder of links into an archive (files, a case's sequences, a case folder): DELETE removed the
    links' targets, the archive's own files, and left dangling links listed."""
    archive, studies = tmp_path / "archive", tmp_path / "studies"
    names = ("t2f", "t1c")
    flat = write_sequences(str(archive / "flat"), "Q", seed=1, sequences=names, label_folder=str(archive / "masks"))
    write_sequences(str(archive / "folders"), "V", seed=2, sequences=names, layout="/")
    final = studies / "labels" / "final"
    final.mkdir(parents=True)
    for sequence in names:
        (studies / f"Q-{sequence}.nii.gz").symlink_to(archive / "flat" / f"Q-{sequence}.nii.gz")
    (studies / "V").symlink_to(archive / "folders" / "V", target_is_directory=True)
    (final / "Q.nii.gz").symlink_to(flat.label_path)
    before = snapshot(archive)
    datastore = TumorDatastore(str(studies), make_config(sequences="t2f,t1c", modality="mr"), auto_reload=False)
    assert sorted(datastore.list_images()) == ["Q", "V"] and datastore.get_label_uri("Q", DefaultLabelTag.FINAL)

    datastore.remove_image("Q")
    datastore.remove_image("V")

    assert snapshot(archive) == before and os.path.isdir(archive / "folders" / "V")
    assert sorted(os.listdir(studies)) == [".lock", "datastore_v2.json", "labels"] and os.listdir(final) == []
    assert datastore.list_images() == []


def test_a_case_of_links_to_files_named_otherwise_is_read_whole(tmp_path: Path, make_config) -> None:
    """``L-t2f.nii.gz -> archive/L/flair.nii.gz``: resolved, the first file had no sequences beside it, and the case
    was read as one channel (422 for the model of 2) while training, through the listed paths, took it whole."""
    archive, studies = tmp_path / "archive", tmp_path / "studies"
    case = write_sequences(str(archive / "named"), "L", seed=1, sequences=("t2f", "t1c"))
    (archive / "L").mkdir()
    for sequence, own in (("t2f", "flair"), ("t1c", "t1ce")):
        os.rename(archive / "named" / f"L-{sequence}.nii.gz", archive / "L" / f"{own}.nii.gz")
        studies.mkdir(exist_ok=True)
        (studies / f"L-{sequence}.nii.gz").symlink_to(archive / "L" / f"{own}.nii.gz")
    datastore = TumorDatastore(str(studies), make_config(sequences="t2f,t1c", modality="mr"), auto_reload=False)

    path = datastore.get_image_uri("L")

    assert path == str(studies / "L-t2f.nii.gz")
    datastore.check_complete("L")  # both sequences found and checked
    image, _ = read_case(path, ("t2f", "t1c"))
    assert image.shape[0] == 2 and np.allclose(image, case.image, atol=1e-3)
    assert datastore.get_image_uri("unknown") == ""


def test_links_to_nothing_are_replaced_not_written_through(tmp_path: Path, config: AppConfig) -> None:
    """A link whose target has gone is not listed, so no earlier file was kept aside and the upload was written
    where the link pointed, outside the studies folder."""
    archive, studies = tmp_path / "archive", tmp_path / "studies"
    case = write_case(str(studies), "case0", seed=0, label_folder=str(tmp_path / "truth"))
    (studies / "labels" / "final").mkdir(parents=True)
    (studies / "labels" / "final" / "case0.nii.gz").symlink_to(archive / "gone-label.nii.gz")
    (studies / "case1.nii.gz").symlink_to(archive / "gone-image.nii.gz")
    datastore = TumorDatastore(str(studies), config, auto_reload=False)

    datastore.save_label("case0", case.label_path, DefaultLabelTag.FINAL, {})
    datastore.add_image("case1", case.image_path, {})

    assert not archive.exists()
    for stored in (studies / "labels" / "final" / "case0.nii.gz", studies / "case1.nii.gz"):
        assert stored.is_file() and not stored.is_symlink()
    assert sorted(datastore.list_images()) == ["case0", "case1"]


def test_a_dangling_link_does_not_hide_the_file_of_its_id(tmp_path: Path, config: AppConfig) -> None:
    studies = tmp_path / "studies"
    write_case(str(studies), "P", seed=0, label_folder=str(tmp_path / "truth"))
    os.rename(studies / "P.nii.gz", tmp_path / "P.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "P.nii.gz")), str(studies / "P.nrrd"))
    (studies / "P.nii.gz").symlink_to(tmp_path / "gone.nii.gz")

    datastore = TumorDatastore(str(studies), config, auto_reload=False, extensions=VOLUME_EXTENSIONS)

    assert datastore.list_images() == ["P"] and datastore.get_image_uri("P").endswith("P.nrrd")


def test_removing_a_case_whose_folder_went_or_is_a_link_updates_the_list_at_once(tmp_path: Path, make_config) -> None:
    """A folder already gone raised FileNotFoundError (a 500); a removed link to a case folder, which the watcher
    sees as a file, stayed listed, and a second DELETE failed on it."""
    archive, studies = tmp_path / "archive", tmp_path / "studies"
    names = ("t2f", "t1c")
    write_sequences(str(studies), "gone", seed=1, sequences=names, layout="/")
    write_sequences(str(archive), "linked", seed=2, sequences=names, layout="/")
    (studies / "linked").symlink_to(archive / "linked", target_is_directory=True)
    config = make_config(sequences="t2f,t1c", modality="mr")
    datastore = TumorDatastore(str(studies), config, auto_reload=False)  # it has not seen the folder go
    assert sorted(datastore.list_images()) == ["gone", "linked"]
    shutil.rmtree(studies / "gone")
    datastore.remove_image("gone")
    datastore.remove_image("linked")
    assert datastore.list_images() == [] and (archive / "linked" / "t1c.nii.gz").exists()

    server = TumorDatastore(str(studies), config, auto_reload=True)
    try:
        (studies / "again").symlink_to(archive / "linked", target_is_directory=True)  # a link added by hand
        assert _wait_for(lambda: server.list_images() == ["again"])
        server.remove_image("again")
        assert server.list_images() == []  # at once, whatever the watcher has seen
        (studies / "more").symlink_to(archive / "linked", target_is_directory=True)
        assert _wait_for(lambda: server.list_images() == ["more"])
        (studies / "more").unlink()  # a link removed by hand
        assert _wait_for(lambda: server.list_images() == [])
    finally:
        server._observer.stop()


def test_an_unreadable_folder_in_the_studies_folder_is_skipped(
    tmp_path: Path, make_config, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lost+found at a disk's root (root only) stopped the server's start-up with a PermissionError.
    studies = tmp_path / "studies"
    write_sequences(str(studies), "P", seed=1, sequences=("t2f", "t1c"), layout="/")
    (studies / "lost+found").mkdir()
    listdir = os.listdir

    def refusing(path: str = ".") -> list[str]:
        if os.path.basename(os.fspath(path)) == "lost+found":
            raise PermissionError(13, "Permission denied", path)
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refusing)

    datastore = TumorDatastore(str(studies), make_config(sequences="t2f,t1c", modality="mr"), auto_reload=False)

    assert datastore.list_images() == ["P"]
    assert "folder lost+found cannot be read (Permission denied): not listed" in caplog.text


def test_a_new_label_over_a_linked_one_is_written_in_the_studies_folder(tmp_path: Path, config: AppConfig) -> None:
    """Submitting over a label that links into an archive wrote the new label over the archive's file."""
    archive, studies = tmp_path / "archive", tmp_path / "studies"
    case = write_case(str(archive), "case0", seed=0, label_folder=str(archive / "masks"))
    (studies / "labels" / "final").mkdir(parents=True)
    (studies / "case0.nii.gz").symlink_to(case.image_path)
    (studies / "labels" / "final" / "case0.nii.gz").symlink_to(case.label_path)
    before = snapshot(archive)
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    new = label_file(np.zeros_like(case.label), case.image_path, tmp_path / "empty.nii.gz")

    datastore.save_label("case0", new, DefaultLabelTag.FINAL, {})

    assert snapshot(archive) == before
    stored = studies / "labels" / "final" / "case0.nii.gz"
    assert not stored.is_symlink() and not sitk.GetArrayFromImage(sitk.ReadImage(str(stored))).any()
    kept = list((studies / "labels" / "final" / ".replaced").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == Path(case.label_path).read_bytes()
    datastore.remove_label("case0", DefaultLabelTag.FINAL)
    assert snapshot(archive) == before and not stored.exists()


def test_a_file_named_as_a_sequence_is_not_read_as_a_case_of_the_studies_folder(
    tmp_path: Path, make_config, caplog
) -> None:
    """``studies/t2f.nii.gz`` read as the first sequence of a case whose folder is the studies folder: its other
    sequences were other cases' files (``t1c.nii.gz``, uploaded under id t1c), and deleting it deleted them."""
    folder = tmp_path / "studies"
    stacked = write_case(str(tmp_path / "uploads"), "stack", seed=1, channels=2, modality="mr")
    write_sequences(str(folder), "case1", seed=2, sequences=("t2f", "t1c"))
    folder.joinpath("t2f.nii.gz").write_bytes(Path(stacked.image_path).read_bytes())
    folder.joinpath("t1c.nii.gz").write_bytes(Path(stacked.image_path).read_bytes())
    config = make_config(sequences="t2f,t1c", modality="mr")

    datastore = TumorDatastore(str(folder), config, auto_reload=False)

    assert datastore.list_images() == ["case1"]
    assert "t2f.nii.gz in the studies folder is named as a sequence: it is not listed" in caplog.text
    for image_id in ("t2f", "t1c"):
        with pytest.raises(HTTPException) as refused:
            datastore.add_image(image_id, stacked.image_path, {})
        assert refused.value.status_code == 422 and "is a sequence's name" in refused.value.detail
    datastore.add_image("stack", stacked.image_path, {})
    datastore.remove_image("stack")
    assert (folder / "t1c.nii.gz").exists() and (folder / "case1-t1c.nii.gz").exists()


def test_a_label_saved_without_info_is_stored_with_the_apps_names(studies: Path, config: AppConfig, tmp_path) -> None:
    # MONAI Label's own callers may pass no info at all; the stored info still names the stored values.
    datastore = TumorDatastore(str(studies), config, auto_reload=False)
    datastore.save_label("case0", str(tmp_path / "source-labels" / "case0.nii.gz"), DefaultLabelTag.FINAL, None)
    info = datastore.get_label_info("case0", DefaultLabelTag.FINAL)
    assert info["label_info"] == [{"name": "tumor", "idx": 1}]
