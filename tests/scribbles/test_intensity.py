"""Intensity models learned from the marked voxels, on the image's own values."""

from __future__ import annotations

import numpy as np
import pytest

from scribbles.intensity import IntensityModel, robust_normalise


def test_robust_normalise_centres_and_scales_each_channel() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(40, 10, (20, 20, 10)), rng.normal(-500, 200, (20, 20, 10))]).astype(np.float32)
    x = robust_normalise(image)
    assert x.dtype == np.float32 and x.shape == image.shape
    for channel in x:
        q1, median, q3 = np.percentile(channel, [25, 50, 75])
        assert median == pytest.approx(0, abs=1e-5) and (q3 - q1) == pytest.approx(1.349, rel=1e-4)


def test_constant_channel_does_not_divide_by_zero() -> None:
    assert np.isfinite(robust_normalise(np.full((1, 4, 4, 4), 7.0, np.float32))).all()


def test_bimodal_background_around_a_middle_foreground() -> None:
    # Background darker AND brighter than the tumour: no single threshold or window separates them.
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 5, 400), rng.normal(100, 5, 400), rng.normal(200, 5, 400)])
    image = values.reshape(1, 12, 10, 10).astype(np.float32)
    fg = (np.arange(1200) // 400 == 1).reshape(12, 10, 10)
    model = IntensityModel().fit(image, fg, ~fg)
    p = model.foreground_probability(image)
    assert p.shape == (12, 10, 10) and p.dtype == np.float32
    assert p[fg].min() > 0.9 and p[~fg].max() < 0.1


def test_second_channel_carries_the_contrast() -> None:
    rng = np.random.default_rng(2)
    fg = np.zeros((16, 16, 8), bool)
    fg[4:12, 4:12, 2:6] = True
    image = np.stack([rng.normal(50, 10, fg.shape), rng.normal(0, 5, fg.shape) + 60 * fg]).astype(np.float32)
    marked_fg, marked_bg = fg.copy(), ~fg
    marked_fg[:, :, 2:4], marked_bg[:, :, 4:] = False, False  # the model sees half of each class
    p = IntensityModel().fit(image, marked_fg, marked_bg).foreground_probability(image)
    assert ((p > 0.5) == fg).mean() > 0.99


def test_one_channel_shortcut_matches_direct_scoring() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(-100, 200, (1, 20, 20, 6)).astype(np.float32)
    fg = image[0] > 60
    model = IntensityModel().fit(image, fg, ~fg)
    features = image.reshape(1, -1).T
    direct = model.foreground.score_samples(features) - model.background.score_samples(features)
    expected = 1 / (1 + np.exp(-np.clip(direct, -30, 30)))
    np.testing.assert_allclose(model.foreground_probability(image).ravel(), expected, rtol=1e-5, atol=1e-6)


def test_too_few_marked_voxels_is_a_clear_error() -> None:
    image = np.zeros((1, 4, 4, 4), np.float32)
    one = np.zeros((4, 4, 4), bool)
    one[0, 0, 0] = True
    with pytest.raises(ValueError, match="foreground intensity model needs at least 2 marked voxels, got 1"):
        IntensityModel().fit(image, one, ~one)
