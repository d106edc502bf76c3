"""The served interactive tasks keep the last images in memory, and reload an image that changed on disk."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from lib.transforms.volume_io import VolumeReadError
from scribbles import ClickToolInfer, InteractionError, ScribblesInfer
from tests.synthetic import write_case, write_sequences


def test_images_are_read_once_until_the_file_changes(tmp_path) -> None:
    case = write_case(str(tmp_path), "case", seed=1, label_folder=str(tmp_path / "labels"))
    task = ClickToolInfer(["tumor"])
    first, geometry = task._image({"image": case.image_path})
    again, _ = task._image({"image": case.image_path})
    assert again is first and first.dtype == np.float32 and geometry.size == case.label.shape

    stat = os.stat(case.image_path)
    os.utime(case.image_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reloaded, _ = task._image({"image": case.image_path})
    assert reloaded is not first and np.array_equal(reloaded, first)

    for i in range(3):  # only the last few images are kept
        other = write_case(str(tmp_path), f"other{i}", seed=i, label_folder=str(tmp_path / "labels"))
        task._image({"image": other.image_path})
    assert task._image({"image": case.image_path})[0] is not reloaded


def test_a_multi_sequence_image_is_read_again_when_any_sequence_changes(tmp_path) -> None:
    """The cache was keyed on the first sequence's file alone: with another sequence replaced or removed,
    scribbles and clicks went on serving the case as it was (auto segmentation answered 422)."""
    names = ("t2f", "t1c")
    case = write_sequences(str(tmp_path), "case", seed=1, sequences=names)
    other = write_sequences(str(tmp_path / "other"), "other", seed=2, sequences=names)
    task = ClickToolInfer(["tumor"], sequences=names)
    first, _ = task._image({"image": case.image_path})
    assert task._image({"image": case.image_path})[0] is first

    second = case.image_path.replace("-t2f", "-t1c")
    os.replace(other.image_path.replace("-t2f", "-t1c"), second)  # another t1c put in its place
    replaced, _ = task._image({"image": case.image_path})
    assert np.array_equal(replaced[0], first[0]) and not np.array_equal(replaced[1], first[1])

    os.remove(second)
    with pytest.raises(VolumeReadError, match="case case lacks sequence"):
        task._image({"image": case.image_path})
    os.remove(case.image_path)
    with pytest.raises(VolumeReadError, match=r"lacks sequence\(s\) t2f, t1c"):  # the first named too
        task._image({"image": case.image_path})


def test_a_scribble_volume_of_several_channels_is_refused(tmp_path) -> None:
    # It was read as its first channel without a word; a session of two channels is refused the same way.
    case = write_case(str(tmp_path), "case", seed=1, label_folder=str(tmp_path / "labels"))
    two = write_case(str(tmp_path / "two"), "two", seed=1, channels=2)  # the same grid, two components
    request = {
        "image": case.image_path,
        "label": two.image_path,
        "label_info": [{"name": "tumor", "id": 1}, {"name": "foreground_scribbles", "id": 2}],
        "selected_label_name": "tumor",
    }
    with pytest.raises(InteractionError, match="the scribble volume has 2 channels; send one labelmap"):
        ScribblesInfer(["tumor"])(request)


def test_two_segments_named_as_foreground_scribbles_both_mark_the_tumour(tmp_path) -> None:
    # Two segments of one name: the strokes of each count (a dict of names kept only the last one's value).
    case = write_case(str(tmp_path), "case", seed=1, label_folder=str(tmp_path / "labels"))
    strokes = np.zeros(case.label.shape, np.uint8)
    i, j, k = (int(round(c)) for c in np.argwhere(case.label).mean(axis=0))
    strokes[i - 2 : i + 3, j - 2 : j + 3, k] = 3  # the tumour, drawn in the second segment
    strokes[:3, :3, :] = 1  # background, in a corner
    path = str(tmp_path / "strokes.nii.gz")
    sitk_image = sitk.GetImageFromArray(np.transpose(strokes, (2, 1, 0)))
    sitk_image.CopyInformation(sitk.ReadImage(case.image_path))
    sitk.WriteImage(sitk_image, path)
    request = {
        "image": case.image_path,
        "label": path,
        "label_info": [
            {"name": "background_scribbles", "id": 1},
            {"name": "foreground_scribbles", "id": 3},
            {"name": "foreground_scribbles", "id": 2},
        ],
        "result_extension": ".nii.gz",
    }
    result, meta = ScribblesInfer(["tumor"])(request)
    mask = np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(result)), (2, 1, 0)) > 0
    assert meta["voxels"] > 0 and mask[i, j, k]
    assert (mask & case.label.astype(bool)).sum() > 0.5 * mask.sum()
