"""Click guidance: mapping clicks onto the model's grid, drawing them, and simulating them from labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from monai.transforms import Compose, RandCropByPosNegLabeld

from lib.config import AppConfig
from lib.transforms.guidance import (
    GUIDANCE,
    ClickedObjectd,
    ClickGuidanced,
    DeepestClickd,
    click_training_transforms,
    click_validation_transforms,
    to_model_grid,
)
from lib.transforms.pipeline import IMAGE, LABEL, inference_transforms
from tests.synthetic import SyntheticCase


def test_clicks_map_voxel_centres_onto_the_resampled_grid() -> None:
    # 10 voxels resampled to 5 (twice the spacing): voxels 0-1 -> 0, 4-5 -> 2, 8-9 -> 4.
    assert to_model_grid([[0, 1, 9], [4, 5, 8]], (10, 10, 10), (5, 5, 5)) == [[0, 0, 0, 4], [0, 2, 2, 4]]
    # 3 voxels resampled to 7: centres stay centres, the last voxel stays the last.
    assert to_model_grid([[0, 1, 2]], (3, 3, 3), (7, 7, 7)) == [[0, 1, 3, 5]]
    assert to_model_grid([], (3, 3, 3), (7, 7, 7)) == []


def test_clicks_become_guidance_channels_at_the_clicked_place(config: AppConfig, case: SyntheticCase) -> None:
    data = Compose(inference_transforms(config))({IMAGE: case.image_path})
    shape = tuple(data[IMAGE].shape[1:])
    size = data[f"{IMAGE}_geometry"].size
    click = [int(np.argmax(case.label.sum(axis=(1, 2)))), size[1] // 2, size[2] // 2]
    guided = ClickGuidanced(config)({**data, "foreground": [click], "background": []})
    image = guided[IMAGE]
    assert tuple(image.shape) == (config.plan.channels + 2, *shape)
    np.testing.assert_array_equal(image[: config.plan.channels].numpy(), np.asarray(data[IMAGE]))
    peak = np.unravel_index(int(np.argmax(image[config.plan.channels].numpy())), shape)
    assert list(peak) == to_model_grid([click], size, shape)[0][1:]
    assert float(image[config.plan.channels].max()) == pytest.approx(1.0)
    assert not image[config.plan.channels + 1].any()  # no background click: an empty channel


def test_the_clicked_object_is_one_label_value() -> None:
    label = np.zeros((1, 6, 6, 6), np.uint8)
    label[0, :2], label[0, 4:] = 1, 2
    picker = ClickedObjectd()
    picker.set_random_state(0)
    picked = {tuple(np.unique(picker({LABEL: label})[LABEL] * label).tolist()) for _ in range(20)}
    assert picked == {(0, 1), (0, 2)}  # either object, never both
    assert np.array_equal(ClickedObjectd(random=False)({LABEL: label})[LABEL], (label == 1).astype(np.float32))
    empty = ClickedObjectd()({LABEL: np.zeros_like(label)})[LABEL]  # a background patch: no object
    assert empty.dtype == np.float32 and not empty.any()


def test_click_patches_keep_their_share_on_objects_whatever_foreground_share(make_config) -> None:
    for share in ("0", "1"):
        transforms = click_training_transforms(make_config(foreground_share=share))
        (crop,) = [t for t in transforms if isinstance(t, RandCropByPosNegLabeld)]
        assert crop.cropper.pos_ratio == pytest.approx(2 / 3)


def test_training_patches_carry_a_first_click_inside_the_object(make_config, make_case) -> None:
    config = make_config(samples_per_case="12")
    case = make_case(size=(120, 100, 30))  # room for patches without tumour
    item = {IMAGE: case.image_path, LABEL: case.label_path}
    patches = Compose(click_training_transforms(config))(item)
    assert len(patches) == config.samples_per_case
    with_object = 0
    for patch in patches:
        image, label = np.asarray(patch[IMAGE]), np.asarray(patch[LABEL])
        assert image.shape == (config.plan.channels + 2, *config.patch_size)
        foreground, background = json.loads(patch[GUIDANCE])
        assert len(foreground) == 1 and all(v < 0 for v in background[0]) and not image[config.plan.channels + 1].any()
        if label.any():
            with_object += 1
            assert label[0][tuple(foreground[0][1:])] == 1  # the simulated click lies in the object
            assert image[config.plan.channels][tuple(foreground[0][1:])] == pytest.approx(1.0)
        else:  # a background patch: no click, nothing to segment
            assert all(v < 0 for v in foreground[0]) and not image[config.plan.channels].any()
    assert 0 < with_object < len(patches)  # tumour and background patches, 2 : 1 on average
    validation = Compose(click_validation_transforms(config))(item)
    again = Compose(click_validation_transforms(config))(item)
    assert validation[GUIDANCE] == again[GUIDANCE]  # validation clicks are reproducible


def test_validation_clicks_the_deepest_point_of_the_object() -> None:
    label = np.zeros((1, 12, 12, 10), np.float32)
    label[0, 2:9, 3:10, 1:8] = 1
    clicked = DeepestClickd((1.0, 1.0, 1.0))({LABEL: label})
    assert json.loads(clicked[GUIDANCE]) == [[[0, 5, 6, 4]], [[-1, -1, -1, -1]]]
