"""Reading volumes in voxel (i, j, k) order and writing labels back on exactly the image's grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lib.transforms.geometry import Geometry
from lib.transforms.volume_io import LoadVolume, LoadVolumed, VolumeReadError, read_volume, write_label
from tests.synthetic import SyntheticCase, oblique_direction

CaseWriter = Callable[..., SyntheticCase]
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def assert_same_grid(written: sitk.Image, source: sitk.Image) -> None:
    assert written.GetDimension() == 3
    assert written.GetSize() == source.GetSize()[:3]
    assert np.allclose(written.GetSpacing(), source.GetSpacing()[:3], atol=1e-6)
    assert np.allclose(written.GetOrigin(), source.GetOrigin()[:3], atol=1e-6)
    source_direction = np.asarray(source.GetDirection()).reshape(source.GetDimension(), -1)[:3, :3]
    assert np.allclose(np.asarray(written.GetDirection()).reshape(3, 3), source_direction, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "channels"),
    [
        ({}, 1),  # anisotropic spacing, oblique direction
        ({"direction": IDENTITY}, 1),
        ({"channels": 3}, 3),  # 3D vector image, one component per channel
    ],
    ids=["oblique", "identity", "vector-3ch"],
)
def test_read_then_write_label_keeps_geometry(
    make_case: CaseWriter, tmp_path: Path, kwargs: dict[str, object], channels: int
) -> None:
    case = make_case(**kwargs)
    array, geometry = read_volume(case.image_path)
    assert array.shape == (channels, 48, 40, 20)
    assert np.array_equal(array, case.image)
    assert geometry == Geometry.of(sitk.ReadImage(case.image_path))

    label = (np.arange(48 * 40 * 20) % 3).reshape(48, 40, 20).astype(np.uint8)
    out = write_label(label, geometry, str(tmp_path / "out.nii.gz"))

    written = sitk.ReadImage(out)
    assert_same_grid(written, sitk.ReadImage(case.image_path))
    assert written.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(np.transpose(sitk.GetArrayFromImage(written), (2, 1, 0)), label)


def test_4d_image_reads_last_axis_as_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 6, 5, 4)).astype(np.float32)  # (C, I, J, K)
    image = sitk.JoinSeries([sitk.GetImageFromArray(np.transpose(c, (2, 1, 0))) for c in data])  # size (I, J, K, C)
    image.SetSpacing((0.7, 0.9, 2.5, 1.0))
    image.SetOrigin((3.0, -4.0, 5.0, 0.0))
    direction = np.eye(4)
    direction[:3, :3] = np.reshape(oblique_direction(30.0), (3, 3))
    image.SetDirection(tuple(direction.ravel()))
    path = str(tmp_path / "four_d.nii.gz")
    sitk.WriteImage(image, path)

    array, geometry = read_volume(path)

    assert array.shape == (2, 6, 5, 4)
    assert np.array_equal(array, data)
    assert geometry.size == (6, 5, 4)
    assert np.allclose(geometry.spacing, (0.7, 0.9, 2.5))
    assert np.allclose(geometry.direction, oblique_direction(30.0))
    out = write_label(np.ones((6, 5, 4), np.uint8), geometry, str(tmp_path / "label.nii.gz"))
    assert_same_grid(sitk.ReadImage(out), sitk.ReadImage(path))


def test_write_label_refuses_wrong_shape(case, tmp_path: Path) -> None:
    _, geometry = read_volume(case.image_path)
    with pytest.raises(ValueError, match=r"label shape \(40, 48, 20\) does not match the image size \(48, 40, 20\)"):
        write_label(np.zeros((40, 48, 20), np.uint8), geometry, str(tmp_path / "out.nii.gz"))


def test_load_volume_returns_float32(case) -> None:
    array, geometry = LoadVolume(channels=1)(case.image_path)
    assert array.dtype == np.float32
    assert array.shape == (1, 48, 40, 20)
    assert geometry.size == (48, 40, 20)


@pytest.mark.parametrize(("written", "expected"), [(1, 2), (3, 1)])
def test_load_volume_wrong_channel_count(make_case: CaseWriter, written: int, expected: int) -> None:
    case = make_case(channels=written)
    with pytest.raises(VolumeReadError, match=f"has {written} channel\\(s\\); the model takes {expected}"):
        LoadVolume(channels=expected)(case.image_path)


def test_corrupt_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VolumeReadError, match="cannot read corrupt.nii.gz as an image"):
        read_volume(str(path))


def test_2d_image_raises(tmp_path: Path) -> None:
    path = str(tmp_path / "slice.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.float32)), path)
    with pytest.raises(VolumeReadError, match="slice.nii.gz has 2 dimensions; a 3D volume is needed"):
        LoadVolume()(path)


def test_load_volumed_reads_image_label_and_geometry(case) -> None:
    d = LoadVolumed(["image", "label"], channels=1)({"image": case.image_path, "label": case.label_path})
    assert np.array_equal(d["image"], case.image)
    assert np.array_equal(d["label"][0], case.label)
    assert d["image_geometry"] == d["label_geometry"]


@pytest.mark.parametrize(
    ("label_kwargs", "problem"),
    [
        ({"spacing": (0.8, 1.1, 2.0)}, "spacing"),
        ({"size": (48, 40, 21)}, "size"),
        ({"direction": IDENTITY}, "direction"),
    ],
)
def test_load_volumed_refuses_label_off_image_grid(
    make_case: CaseWriter, tmp_path: Path, label_kwargs: dict[str, object], problem: str
) -> None:
    image = make_case("image", seed=0)
    other = make_case("other", seed=0, folder=str(tmp_path / "other"), **label_kwargs)
    with pytest.raises(VolumeReadError, match=f"label does not lie on the image grid: {problem}"):
        LoadVolumed(["image", "label"], channels=1)({"image": image.image_path, "label": other.label_path})


def test_load_volumed_refuses_multichannel_label(make_case: CaseWriter, tmp_path: Path) -> None:
    image = make_case("image")
    vector = make_case("vector", channels=2, folder=str(tmp_path / "vector"))
    with pytest.raises(VolumeReadError, match="has 2 channel"):
        LoadVolumed(["image", "label"], channels=1)({"image": image.image_path, "label": vector.image_path})
