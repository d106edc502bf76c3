"""The shared preprocessing pipeline, and inference end to end on awkward grids."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import Compose, RandCropByPosNegLabeld

from lib.config import APP_DIR, AppConfig, parse_config
from lib.infers import ModelNotTrainedError, SegmentationInfer
from lib.networks.ensemble import Ensemble
from lib.transforms.geometry import Geometry
from lib.transforms.pipeline import (
    IMAGE,
    LABEL,
    PRED,
    LabelOnGeometryd,
    argmax_channels,
    inference_transforms,
    sliding_window,
    spatial_augmentation,
    training_transforms,
    validation_transforms,
    window_size,
)
from lib.transforms.resample import resampled_shape, resize
from tests.synthetic import SyntheticCase

CaseWriter = Callable[..., SyntheticCase]
ConfigFactory = Callable[..., AppConfig]
SOURCE_SPACING = "0.8,1.1,3.3"  # the synthetic cases' spacing: resampling to it is the identity


@pytest.mark.parametrize(
    ("conf", "case_kwargs"),
    [({}, {}), ({"modality": "mr", "channels": "2", "spacing": "2,2,2"}, {"channels": 2, "modality": "mr"})],
    ids=["ct-1ch", "mr-2ch"],
)
def test_validation_and_inference_see_the_same_image(
    make_config: ConfigFactory, make_case: CaseWriter, conf: dict[str, str], case_kwargs: dict[str, object]
) -> None:
    config = make_config(**conf)
    case = make_case(**case_kwargs)
    validated = Compose(validation_transforms(config))({IMAGE: case.image_path, LABEL: case.label_path})
    inferred = Compose(inference_transforms(config))({IMAGE: case.image_path})

    expected_shape = resampled_shape(Geometry.of(sitk.ReadImage(case.image_path)), config.plan.spacing)
    assert tuple(inferred[IMAGE].shape) == (config.plan.channels, *expected_shape)
    assert torch.equal(validated[IMAGE], inferred[IMAGE])
    assert tuple(validated[LABEL].shape) == (1, *expected_shape)
    assert set(validated) == {IMAGE, LABEL}


def test_training_patches_have_patch_size_and_aligned_labels(make_config: ConfigFactory, case: SyntheticCase) -> None:
    config = make_config(samples_per_case="6", ct_window="0,160")  # background ~0.25, tumour ~0.75
    transforms = Compose(training_transforms(config)).set_random_state(seed=0)

    patches = transforms({IMAGE: case.image_path, LABEL: case.label_path})

    assert len(patches) == config.samples_per_case
    with_tumour = 0
    for patch in patches:
        image, label = patch[IMAGE], patch[LABEL]
        assert tuple(image.shape) == (1, *config.patch_size)
        assert tuple(label.shape) == (1, *config.patch_size)
        assert set(torch.unique(label).tolist()) <= {0.0, 1.0}
        if 0.05 < label.mean() < 0.95:  # enough of both classes for their means to be meaningful
            with_tumour += 1
            # Flips move image and label together: the tumour stays brighter under its own label.
            assert image[label > 0].mean() - image[label == 0].mean() > 0.3
    assert with_tumour >= 1


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_foreground_share_decides_whether_patches_centre_on_the_label(
    make_config: ConfigFactory, case: SyntheticCase, share: float
) -> None:
    config = make_config(samples_per_case="24", foreground_share=str(share), spacing=SOURCE_SPACING)
    (crop,) = [t for t in training_transforms(config) if isinstance(t, RandCropByPosNegLabeld)]
    crop.set_random_state(seed=0)
    volume = Compose(validation_transforms(config))({IMAGE: case.image_path, LABEL: case.label_path})
    labelled = volume[LABEL][0] > 0
    assert 0 < labelled.sum() < labelled.numel() / 4  # a tumour well inside the image: crop centres are not moved

    patches = crop(volume)

    centre = tuple(size // 2 for size in config.patch_size)
    centred_on_tumour = [bool(patch[LABEL][(0, *centre)] > 0) for patch in patches]
    assert centred_on_tumour == [share == 1.0] * len(patches)


def test_spatial_augmentation_rotates_and_scales_image_and_label_together(
    make_config: ConfigFactory, case: SyntheticCase
) -> None:
    assert spatial_augmentation(make_config(augmentation="flips")) == []
    assert parse_config({}, APP_DIR).augmentation == "spatial"  # the default
    config = make_config(augmentation="spatial", samples_per_case="8", ct_window="0,160")
    (affine,) = spatial_augmentation(config)
    affine.prob = 1.0  # every patch, so that the test sees the transform at work
    transforms = Compose([*validation_transforms(config), affine]).set_random_state(seed=0)
    plain = Compose(validation_transforms(config))({IMAGE: case.image_path, LABEL: case.label_path})
    moved = transforms({IMAGE: case.image_path, LABEL: case.label_path})

    assert moved[IMAGE].shape == plain[IMAGE].shape and set(torch.unique(moved[LABEL]).tolist()) <= {0.0, 1.0}
    assert not torch.equal(moved[LABEL], plain[LABEL])  # the label moved...
    tumour = moved[LABEL] > 0
    assert moved[IMAGE][tumour].mean() - moved[IMAGE][~tumour].mean() > 0.3  # ...with the image under it
    assert 0.6 < tumour.sum() / (plain[LABEL] > 0).sum() < 1.6  # scaled by at most 1.15 per axis


def test_training_pads_a_case_smaller_than_the_patch(make_config: ConfigFactory, make_case: CaseWriter) -> None:
    config = make_config(samples_per_case="2", spacing=SOURCE_SPACING)
    case = make_case(size=(12, 10, 6))
    patches = Compose(training_transforms(config)).set_random_state(seed=0)(
        {IMAGE: case.image_path, LABEL: case.label_path}
    )
    assert [tuple(p[IMAGE].shape) for p in patches] == [(1, 16, 16, 8)] * 2


def test_ct_preset_clips_to_window_and_scales_to_unit_range(make_config: ConfigFactory, case: SyntheticCase) -> None:
    config = make_config(ct_window="50,100", spacing=SOURCE_SPACING)
    image = Compose(inference_transforms(config))({IMAGE: case.image_path})[IMAGE]

    expected = np.clip((case.image - 50.0) / 50.0, 0.0, 1.0)
    assert np.allclose(image.numpy(), expected, atol=1e-5)
    assert float(image.min()) == 0.0
    assert float(image.max()) == 1.0
    assert (image == 0).any() and (image == 1).any()  # the window really clips on both sides


def test_mr_preset_z_scores_each_channel_over_nonzero_voxels(make_config: ConfigFactory, make_case: CaseWriter) -> None:
    config = make_config(modality="mr", channels="2", spacing=SOURCE_SPACING)
    case = make_case(channels=2, modality="mr")
    image = Compose(inference_transforms(config))({IMAGE: case.image_path})[IMAGE]

    assert image.shape == (2, 48, 40, 20)
    for channel, source in zip(image, case.image):
        values = channel[torch.as_tensor(source) != 0]
        assert abs(float(values.mean())) < 1e-4
        assert abs(float(values.std(unbiased=False)) - 1.0) < 1e-3
    # Channels are normalised separately: their raw means differ by 20 but both come out centred.
    assert not np.isclose(case.image[0].mean(), case.image[1].mean())


@pytest.mark.parametrize(
    ("size", "spacing", "target", "expected"),
    [
        ((100, 100, 10), (1.0, 1.0, 3.0), (2.0, 2.0, 3.0), (50, 50, 10)),
        ((48, 40, 20), (0.8, 1.1, 3.3), (1.5, 1.5, 3.0), (26, 29, 22)),
        ((10, 10, 1), (1.0, 1.0, 1.0), (1.0, 1.0, 5.0), (10, 10, 1)),  # never below one voxel
    ],
)
def test_resampled_shape(
    size: tuple[int, int, int],
    spacing: tuple[float, float, float],
    target: tuple[float, float, float],
    expected: tuple[int, int, int],
) -> None:
    geometry = Geometry(size=size, spacing=spacing, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert resampled_shape(geometry, target) == expected


def assert_result_on_image_grid(result_path: str, image_path: str, num_labels: int) -> None:
    result, image = sitk.ReadImage(result_path), sitk.ReadImage(image_path)
    assert result.GetSize() == image.GetSize()
    assert np.allclose(result.GetSpacing(), image.GetSpacing(), atol=1e-6)
    assert np.allclose(result.GetOrigin(), image.GetOrigin(), atol=1e-6)
    assert np.allclose(result.GetDirection(), image.GetDirection(), atol=1e-6)
    assert result.GetPixelID() == sitk.sitkUInt8
    assert result.GetNumberOfComponentsPerPixel() == 1
    assert set(np.unique(sitk.GetArrayFromImage(result)).tolist()) <= set(range(num_labels + 1))


@pytest.mark.parametrize(
    ("conf", "case_kwargs", "labels"),
    [
        ({}, {}, {"tumor": 1}),
        ({"channels": "2", "modality": "mr"}, {"channels": 2, "modality": "mr"}, {"tumor": 1}),
        ({"labels": "tumor,edema"}, {"direction": (0, 1, 0, -1, 0, 0, 0, 0, 1)}, {"tumor": 1, "edema": 2}),
    ],
    ids=["oblique-1ch", "oblique-2ch", "rotated-2labels"],
)
def test_infer_writes_result_on_the_input_grid(
    make_config: ConfigFactory,
    make_case: CaseWriter,
    publish_weights: Callable[..., str],
    conf: dict[str, str],
    case_kwargs: dict[str, object],
    labels: dict[str, int],
) -> None:
    config = make_config(**conf)
    case = make_case(**case_kwargs)
    publish_weights(config, run_id="t")

    result_path, result = SegmentationInfer(config)({"image": case.image_path, "device": "cpu"})

    assert result_path.endswith(".nii.gz")
    assert_result_on_image_grid(result_path, case.image_path, len(labels))
    assert result["label_names"] == labels
    assert result["model"]["run_id"] == "t"
    assert result["model"]["checkpoint"] == "segmentation.pt"
    json.dumps(result)  # the answer goes to the client as JSON


@pytest.mark.parametrize("extension", [".nrrd", ".mha", ".nii"])
def test_infer_result_extension(
    config: AppConfig, case: SyntheticCase, publish_weights: Callable[..., str], extension: str
) -> None:
    publish_weights(config)
    result_path, _ = SegmentationInfer(config)(
        {"image": case.image_path, "device": "cpu", "result_extension": extension}
    )
    assert result_path.endswith(extension)
    assert_result_on_image_grid(result_path, case.image_path, 1)


def test_infer_refuses_unsupported_extension(
    config: AppConfig, case: SyntheticCase, publish_weights: Callable[..., str]
) -> None:
    publish_weights(config)
    with pytest.raises(ValueError, match=r"result_extension '\.png' is not supported"):
        SegmentationInfer(config)({"image": case.image_path, "device": "cpu", "result_extension": ".png"})


def test_infer_without_weights_raises(config: AppConfig, case: SyntheticCase) -> None:
    with pytest.raises(ModelNotTrainedError, match="no trained weights yet"):
        SegmentationInfer(config)({"image": case.image_path, "device": "cpu"})


def test_infer_picks_up_newly_published_weights(
    config: AppConfig, case: SyntheticCase, publish_weights: Callable[..., str]
) -> None:
    task = SegmentationInfer(config)
    publish_weights(config, run_id="first")
    assert task({"image": case.image_path, "device": "cpu"})[1]["model"]["run_id"] == "first"
    path = publish_weights(config, run_id="second")
    stat = Path(path).stat()
    # Make the republished file's timestamp differ even on coarse-grained filesystems.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert task({"image": case.image_path, "device": "cpu"})[1]["model"]["run_id"] == "second"


@pytest.mark.parametrize(
    ("shape", "limit", "window"),
    [
        ((113, 119, 93), 160 * 160 * 64, (120, 120, 96)),  # the whole image, sides rounded up to 8
        ((50, 40, 10), 160 * 160 * 64, (96, 96, 32)),  # never smaller than the training patch
        ((300, 300, 120), 160 * 160 * 64, (152, 152, 64)),  # halved along the longest sides until it fits
        ((300, 300, 120), 1, (96, 96, 32)),  # a budget below the patch: the patch
    ],
)
def test_window_size(make_config: ConfigFactory, shape: tuple, limit: int, window: tuple) -> None:
    config = make_config(patch_size="96,96,32", window_voxels=str(limit))
    assert window_size(config, shape) == window
    assert all(w % 8 == 0 for w in window)


def test_sliding_window_runs_the_network_once_on_an_image_that_fits(make_config: ConfigFactory) -> None:
    config = make_config(patch_size="16,16,8", window_voxels=str(40 * 40 * 16))
    calls: list[tuple[int, ...]] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return torch.cat([x, 2 * x], dim=1)

    image = torch.rand(1, 1, 33, 30, 12)
    output = sliding_window(config)(image, network)

    assert calls == [(1, 1, 40, 32, 16)]  # one window: the image padded to multiples of 8
    assert output.shape == (1, 2, 33, 30, 12)
    torch.testing.assert_close(output[:, 1:], 2 * image)  # the padding is cropped away, values untouched


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_argmax_channels_matches_torch_argmax_ties_included(channels: int) -> None:
    generator = torch.Generator().manual_seed(channels)
    probabilities = torch.rand(channels, 9, 8, 7, generator=generator).round(decimals=1)  # many exact ties
    label = argmax_channels(probabilities)
    assert label.dtype == torch.uint8 and label.shape == (1, 9, 8, 7)
    torch.testing.assert_close(label[0], torch.argmax(probabilities, dim=0).to(torch.uint8))


@pytest.mark.parametrize("classes", [2, 4])
def test_label_on_geometry_equals_the_argmax_of_every_resized_class(classes: int) -> None:
    """Resizing only the label channels gives the labels of resizing all of them, except at float-rounding ties."""
    generator = torch.Generator().manual_seed(classes)
    probabilities = torch.softmax(4 * torch.randn(classes, 12, 10, 6, generator=generator), dim=0)
    geometry = Geometry(
        size=(31, 23, 17), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
    )

    label = LabelOnGeometryd(PRED)({PRED: probabilities, f"{IMAGE}_geometry": geometry})[PRED]

    every_class = resize(probabilities, geometry.size, "trilinear")
    assert label.dtype == torch.uint8 and label.shape == (1, 31, 23, 17)
    top2 = every_class.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 1e-5  # not a tie up to float rounding
    assert clear.float().mean() > 0.99
    torch.testing.assert_close(label[0][clear], torch.argmax(every_class, dim=0).to(torch.uint8)[clear])
    assert set(label.unique().tolist()) == set(range(classes))  # every class is found somewhere


class Ramp(torch.nn.Module):
    """A 'network' whose tumour logit is a ramp along i, whatever the image: mirroring along i reverses it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-3.0, 3.0, x.shape[2]).view(1, 1, -1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return torch.cat([torch.zeros_like(ramp), ramp], dim=1)


def test_mirror_tta_averages_the_image_and_its_three_in_plane_mirrors(make_config: ConfigFactory) -> None:
    config = make_config()
    image = torch.rand(1, 1, 16, 16, 8)
    plain = torch.softmax(sliding_window(config)(image, Ramp()), dim=1)
    mirrored = torch.softmax(sliding_window(config, mirror=True)(image, Ramp()), dim=1)
    # Without: sigmoid of the ramp. With: two passes see the ramp, two (flipped along i) its reverse, and
    # sigmoid(r) + sigmoid(-r) = 1, so the mean tumour probability is 0.5 everywhere.
    assert plain[0, 1, 0].mean() < 0.1 and plain[0, 1, -1].mean() > 0.9
    torch.testing.assert_close(mirrored[0, 1], torch.full((16, 16, 8), 0.5), atol=1e-4, rtol=0)
    # An image the network treats the same flipped or not keeps its segmentation.
    constant = torch.nn.Conv3d(1, 2, 1)
    torch.testing.assert_close(
        torch.softmax(sliding_window(config, mirror=True)(image, constant), 1),
        torch.softmax(sliding_window(config)(image, constant), 1),
        atol=1e-5,
        rtol=0,
    )


class Constant(torch.nn.Module):
    """A 'network' whose tumour logit is ``logit`` everywhere, whatever the image."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tumour = torch.full((x.shape[0], 1, *x.shape[2:]), self.logit)
        return torch.cat([torch.zeros_like(tumour), tumour], dim=1)


def test_an_ensemble_averages_its_members_probabilities_not_their_logits(make_config: ConfigFactory) -> None:
    config = make_config()
    image = torch.rand(1, 1, 16, 16, 8)
    members = Ensemble([Constant(4.0), Constant(-1.0)])
    ensemble = torch.softmax(sliding_window(config)(image, members), dim=1)
    # (sigmoid(4) + sigmoid(-1)) / 2 = (0.98201 + 0.26894) / 2; averaging the logits would give sigmoid(1.5) = 0.818
    expected = (torch.sigmoid(torch.tensor(4.0)) + torch.sigmoid(torch.tensor(-1.0))) / 2
    torch.testing.assert_close(ensemble[0, 1], torch.full((16, 16, 8), float(expected)), atol=1e-5, rtol=0)
    # with mirror TTA, each member's four passes join the average: Ramp's mirrors average to 0.5, Constant(4) stays
    both = Ensemble([Ramp(), Constant(4.0)])
    mirrored = torch.softmax(sliding_window(config, mirror=True)(image, both), dim=1)
    expected = (0.5 + torch.sigmoid(torch.tensor(4.0))) / 2
    torch.testing.assert_close(mirrored[0, 1], torch.full((16, 16, 8), float(expected)), atol=1e-4, rtol=0)
