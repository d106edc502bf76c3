"""Scribbles and clicks through the real server, sent exactly as the 3D Slicer module sends them."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from tests.apps.conftest import Server
from tests.apps.test_server import assert_same_grid, error_of
from tests.support.annotator import deepest_point, dice, next_click, scribbles
from tests.support.slicer import LABEL_INFO, SLICER

pytestmark = pytest.mark.integration


def ijk(array_kji: np.ndarray) -> np.ndarray:
    return np.transpose(array_kji, (2, 1, 0))


def scribble_file(server: Server, case: str, values: np.ndarray, path: str, like: str | None = None) -> str:
    """Write an (I, J, K) labelmap on the case's grid (or on ``like``'s), as the module exports it."""
    reference = sitk.ReadImage(like or server.cases[case].image_path)
    image = sitk.GetImageFromArray(np.transpose(values.astype(np.uint8), (2, 1, 0)))
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    sitk.WriteImage(image, path)
    return path


def result(path: str) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(path)
    return ijk(sitk.GetArrayFromImage(image)), image


def test_info_advertises_scribbles_and_clicks(server: Server) -> None:
    models = server.client.info()["models"]
    assert models["scribbles"]["type"] == "scribbles" and models["clicks"]["type"] == "deepgrow"
    for name in ("scribbles", "clicks"):
        assert models[name]["labels"] == ["tumor"] and models[name]["dimension"] == 3
    # What the annotator reads in the panel: how to use each tool, and that it needs no training.
    assert "foreground" in models["scribbles"]["description"] and "background" in models["scribbles"]["description"]
    assert models["clicks"]["description"].startswith("Clicks: click inside the tumour")
    assert "without training" in models["clicks"]["description"]


def test_scribbles_segment_the_tumour_on_the_image_grid(server: Server, tmp_path) -> None:
    case = server.cases["case1"]
    truth = case.label.astype(bool)
    fg, bg = scribbles(truth)
    values = np.zeros(truth.shape, np.uint8)
    values[bg], values[fg] = 2, 3
    label = scribble_file(server, "case1", values, str(tmp_path / "scribbles.nii.gz"))
    params = {**SLICER, "label_info": LABEL_INFO, "selected_label_name": "tumor", "roi": []}

    path, reply = server.client.infer("scribbles", "case1", params, label_in=label)
    mask, image = result(path)
    assert_same_grid(image, case.image_path)
    assert set(np.unique(mask)) == {0, 1} and image.GetPixelID() == sitk.sitkUInt8
    assert dice(mask, truth) > 0.9
    assert reply["label_names"] == {"tumor": 1}

    # An ROI whose corners arrive unsorted (flipped volume) limits the result.
    i = np.flatnonzero(truth.any(axis=(1, 2)))
    middle = int(i.mean())
    roi = [truth.shape[0] - 1, middle, truth.shape[1] - 1, 0, truth.shape[2] - 1, 0]
    path, _ = server.client.infer("scribbles", "case1", {**params, "roi": roi}, label_in=label)
    mask, _ = result(path)
    assert mask.any() and not mask[:middle].any()


def test_scribble_errors_are_clear_and_change_nothing(server: Server, tmp_path) -> None:
    case = server.cases["case2"]
    truth = case.label.astype(bool)
    _, bg = scribbles(truth)
    only_bg = np.where(bg, 2, 0).astype(np.uint8)
    params = {**SLICER, "label_info": LABEL_INFO, "selected_label_name": "tumor", "roi": []}
    label = scribble_file(server, "case2", only_bg, str(tmp_path / "bg.nii.gz"))
    before = server.client.info()["datastore"]
    message = error_of(lambda: server.client.infer("scribbles", "case2", params, label_in=label))
    assert "no foreground mark" in message

    # A scribble volume exported on another image's grid.
    other = scribble_file(server, "case2", only_bg[:, :-2], str(tmp_path / "other.nii.gz"))
    message = error_of(lambda: server.client.infer("scribbles", "case2", params, label_in=other))
    assert "not on the image's grid" in message and "size" in message

    message = error_of(lambda: server.client.infer("scribbles", "case2", params))
    assert "no scribbles" in message
    assert server.client.info()["datastore"] == before


def test_clicks_segment_and_each_click_refines(server: Server) -> None:
    case = server.cases["case3"]
    truth = case.label.astype(bool)
    spacing = sitk.ReadImage(case.image_path).GetSpacing()
    first = deepest_point(truth, spacing)
    params = {**SLICER, "label": "tumor", "foreground": [list(first)], "background": []}
    path, reply = server.client.infer("clicks", "case3", params)
    mask, image = result(path)
    assert_same_grid(image, case.image_path)
    assert mask[first] == 1 and image.GetPixel(*first) == 1  # IJK as Slicer sends it: sitk index order
    assert dice(mask, truth) > 0.85 and reply["label_names"] == {"tumor": 1}

    # A corrective click where the result is wrong: the next result keeps the first click's object.
    point, foreground = next_click(truth, mask, spacing)
    key = "foreground" if foreground else "background"
    params[key] = params[key] + [list(point)]
    path, _ = server.client.infer("clicks", "case3", params)
    corrected, _ = result(path)
    assert corrected[first] == 1 and corrected[point] == int(foreground)
    assert dice(corrected, truth) >= dice(mask, truth) - 0.01


def test_clicks_outside_the_image_are_refused(server: Server) -> None:
    size = server.cases["case0"].label.shape
    params = {**SLICER, "label": "tumor", "foreground": [[size[0], 0, 0]], "background": []}
    message = error_of(lambda: server.client.infer("clicks", "case0", params))
    assert "foreground point" in message and "outside the image" in message
    message = error_of(lambda: server.client.infer("clicks", "case0", {**params, "foreground": []}))
    assert "no foreground click" in message
    assert os.path.isdir(server.studies)
