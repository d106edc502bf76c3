"""The served interactive tasks keep the last images in memory, and reload an image that changed on disk."""

from __future__ import annotations

import os

import numpy as np
import pytest

from scribbles import ClickToolInfer, InteractionError, ScribblesInfer
from tests.synthetic import write_case


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
