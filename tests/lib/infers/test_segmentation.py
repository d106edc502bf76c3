"""Auto segmentation's post-processing option: the largest component as validation decided, always, or never."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from lib.checkpoint import Weights, publish
from lib.config import AppConfig
from lib.infers import ClickNetworkInfer, SegmentationInfer
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from tests.synthetic import SyntheticCase


def two_blob_logits(image: torch.Tensor, network: object) -> torch.Tensor:
    """Network output on the model grid marking a large block and a small, separate one as tumour."""
    logits = torch.full((1, 2, *image.shape[2:]), -5.0)
    logits[:, 0] = 0
    logits[:, 1, 1:8, 1:8, 1:6] = 5
    logits[:, 1, -4:-2, -4:-2, -4:-2] = 5
    return logits


def components(path: str) -> int:
    label = sitk.GetArrayFromImage(sitk.ReadImage(path)) > 0
    return ndimage.label(label, structure=np.ones((3, 3, 3)))[1]


@pytest.fixture
def infer(config: AppConfig, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, dict]]:
    """Runs auto segmentation with the two-blob network output on checkpoint meta ``meta``; returns the number of
    tumour components in the result and the result's parameters."""

    def run(case: SyntheticCase, meta: dict, **request: str) -> tuple[int, dict]:
        state = build_network(config.plan).state_dict()
        path = SEGMENTATION.published_path(config.model_dir)
        publish([Weights(state, {"run_id": "t", **meta}, path)], config.plan, [SEGMENTATION])
        task = SegmentationInfer(config)
        monkeypatch.setattr(task, "inferer", lambda data=None: two_blob_logits)
        path, result = task({"image": case.image_path, "device": "cpu", **request})
        return components(path), result

    return run


def test_auto_follows_the_validated_choice_of_the_served_weights(infer, case: SyntheticCase) -> None:
    count, result = infer(case, {"keep_largest": ["tumor"]})
    assert (count, result["keep_largest"]) == (1, ["tumor"])
    count, result = infer(case, {"keep_largest": []})
    assert (count, result["keep_largest"]) == (2, [])
    count, result = infer(case, {})  # weights trained before the choice existed
    assert (count, result["keep_largest"]) == (2, [])


@pytest.mark.parametrize(("option", "expected"), [("on", 1), ("off", 2), (["off", "on"], 2)])
def test_the_option_forces_post_processing(infer, case: SyntheticCase, option, expected: int) -> None:
    meta = {"keep_largest": []} if expected == 1 else {"keep_largest": ["tumor"]}  # the option overrides it
    assert infer(case, meta, keep_largest=option)[0] == expected


def test_an_unknown_option_value_is_refused(infer, case: SyntheticCase) -> None:
    with pytest.raises(
        ValueError, match=r"keep_largest 'largest' is not supported; use one of \('auto', 'on', 'off'\)"
    ):
        infer(case, {}, keep_largest="largest")


def test_offered_to_annotators_for_auto_segmentation_but_not_for_clicks(config: AppConfig) -> None:
    assert SegmentationInfer(config).config()["keep_largest"] == ["auto", "on", "off"]
    assert "keep_largest" not in ClickNetworkInfer(config).config()
    data = {"keep_largest": "on"}  # even if a request sent it: a region clicked into the object stays in it
    assert ClickNetworkInfer(config).keep_largest(data, {"keep_largest": ["tumor"]}) == []


def test_mirror_tta_is_used_by_auto_segmentation_only_when_configured(make_config) -> None:
    assert SegmentationInfer(make_config()).inferer().mirror is False
    assert SegmentationInfer(make_config(tta="mirror")).inferer().mirror is True
