"""Checks on uploaded images and labels, and mapping of 3D Slicer segment values to label values by name."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lib.datastore.validation import (
    InvalidUploadError,
    app_label,
    check_image,
    check_label,
    image_geometry,
    remap_label,
)
from lib.transforms.geometry import Geometry
from tests.synthetic import SyntheticCase, oblique_direction

CaseWriter = Callable[..., SyntheticCase]
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def write_like(array: np.ndarray, reference: str, path: Path, **changes: object) -> str:
    """Write an (I, J, K) or (C, I, J, K) array on ``reference``'s grid, with optional grid ``changes``."""
    image = sitk.ReadImage(reference)
    if array.ndim == 4:
        out = sitk.GetImageFromArray(np.transpose(array, (3, 2, 1, 0)), isVector=True)
    else:
        out = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))
    out.SetSpacing(changes.get("spacing", image.GetSpacing()))
    out.SetOrigin(changes.get("origin", image.GetOrigin()))
    out.SetDirection(changes.get("direction", image.GetDirection()))
    sitk.WriteImage(out, str(path))
    return str(path)


def test_check_label_accepts_matching_label(case: SyntheticCase) -> None:
    label = check_label(case.label_path, case.image_path, num_labels=1, max_voxels=10**8)
    assert label.dtype == np.uint8
    assert np.array_equal(label, case.label)


def test_check_label_converts_float_labels_to_uint8(case: SyntheticCase, tmp_path: Path) -> None:
    path = write_like(case.label.astype(np.float32) * 2, case.image_path, tmp_path / "float.nii.gz")
    label = check_label(path, case.image_path, num_labels=2, max_voxels=10**8)
    assert label.dtype == np.uint8
    assert np.array_equal(label, case.label * 2)


@pytest.mark.parametrize(
    ("array", "changes", "match"),
    [
        (np.zeros((48, 40, 19), np.uint8), {}, r"does not lie on its image's grid: size \(48, 40, 19\)"),
        (np.zeros((48, 40, 20), np.uint8), {"spacing": (0.8, 1.1, 3.0)}, "grid: spacing"),
        (np.zeros((48, 40, 20), np.uint8), {"origin": (0.0, 0.0, 0.0)}, "grid: origin"),
        (np.zeros((48, 40, 20), np.uint8), {"direction": IDENTITY}, "grid: direction"),
        (np.full((48, 40, 20), 2, np.uint8), {}, r"values \[2\]; accepted values are 0 \(background\) to 1"),
        (np.full((48, 40, 20), 0.5, np.float32), {}, r"values \[0.5\]"),
        (np.full((48, 40, 20), -1, np.int16), {}, r"values \[-1\]"),
        (np.zeros((2, 48, 40, 20), np.uint8), {}, "label has 2 channels; a single-channel labelmap is needed"),
    ],
    ids=["size", "spacing", "origin", "direction", "value>K", "non-integer", "negative", "multi-channel"],
)
def test_check_label_refuses(
    case: SyntheticCase, tmp_path: Path, array: np.ndarray, changes: dict[str, object], match: str
) -> None:
    path = write_like(array, case.image_path, tmp_path / "bad.nii.gz", **changes)
    with pytest.raises(InvalidUploadError, match=match):
        check_label(path, case.image_path, num_labels=1, max_voxels=10**8)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_check_label_refuses_non_finite(case: SyntheticCase, tmp_path: Path, bad: float) -> None:
    array = case.label.astype(np.float32)
    array[10, 10, 10] = bad
    path = write_like(array, case.image_path, tmp_path / "nan.nrrd")  # NRRD keeps NaN as written
    with pytest.raises(InvalidUploadError, match="label holds NaN or infinite values"):
        check_label(path, case.image_path, num_labels=1, max_voxels=10**8)


def test_check_label_refuses_fractional_values(case: SyntheticCase, tmp_path: Path) -> None:
    array = case.label.astype(np.float32)
    array[10, 10, 10] = 0.5  # not cut to 0: a resampled or probability map is not a labelmap
    path = write_like(array, case.image_path, tmp_path / "half.nrrd")
    with pytest.raises(InvalidUploadError, match=r"^label holds values \[0.5\]; a label holds whole numbers$"):
        check_label(path, case.image_path, num_labels=1, max_voxels=10**8)


def test_app_label_names_the_values_it_accepts(case: SyntheticCase, tmp_path: Path) -> None:
    path = write_like(np.full((48, 40, 20), 7, np.uint8), case.image_path, tmp_path / "seven.nii.gz")
    with pytest.raises(InvalidUploadError, match=r"values \[7\]; accepted values are 0 \(background\) to 1$"):
        app_label(path, case.image_path, ["tumor"], {}, max_voxels=10**8)
    remapped = app_label(path, case.image_path, ["tumor"], {"label_info": [{"name": "tumor", "idx": 7}]}, 10**8)
    assert set(np.unique(remapped).tolist()) == {1}  # named by label_info, 7 is the app's tumour value


def test_app_label_takes_null_label_info_as_none_and_refuses_other_non_lists(
    case: SyntheticCase, tmp_path: Path
) -> None:
    path = write_like(case.label.astype(np.uint8), case.image_path, tmp_path / "label.nii.gz")
    for absent in ({}, {"label_info": None}, {"label_info": []}):
        assert app_label(path, case.image_path, ["tumor"], absent, 10**8).sum() == case.label.sum()
    for wrong in (False, 0, "", {}):
        with pytest.raises(InvalidUploadError, match="label_info must be a list"):
            app_label(path, case.image_path, ["tumor"], {"label_info": wrong}, 10**8)


def test_check_label_tolerates_header_rounding(case: SyntheticCase, tmp_path: Path) -> None:
    spacing = tuple(s * (1 + 1e-5) for s in sitk.ReadImage(case.image_path).GetSpacing())
    path = write_like(case.label, case.image_path, tmp_path / "rounded.nii.gz", spacing=spacing)
    assert np.array_equal(check_label(path, case.image_path, num_labels=1, max_voxels=10**8), case.label)


def test_check_label_refuses_unreadable_label(case: SyntheticCase, tmp_path: Path) -> None:
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(b"not an image at all" * 100)
    with pytest.raises(InvalidUploadError, match="^label: cannot read junk.nii.gz"):
        check_label(str(path), case.image_path, num_labels=1, max_voxels=10**8)


@pytest.mark.parametrize("channels", [1, 2])
def test_check_image_accepts_and_returns_geometry(make_case: CaseWriter, channels: int) -> None:
    case = make_case(channels=channels)
    geometry = check_image(case.image_path, channels, max_voxels=10**8)
    assert geometry == Geometry.of(sitk.ReadImage(case.image_path))
    assert np.allclose(geometry.direction, oblique_direction())


@pytest.mark.parametrize(("written", "expected"), [(3, 1), (1, 2)])
def test_check_image_refuses_wrong_channels(make_case: CaseWriter, written: int, expected: int) -> None:
    case = make_case(channels=written)
    with pytest.raises(
        InvalidUploadError, match=f"image has {written} channel\\(s\\); this app's model takes {expected}"
    ):
        check_image(case.image_path, expected, max_voxels=10**8)


# NRRD and MHA keep NaN as written (SimpleITK's NIfTI reader already turns NaN into 0).
@pytest.mark.parametrize(("bad", "extension"), [(np.nan, ".nrrd"), (np.inf, ".nrrd"), (np.nan, ".mha")])
def test_check_image_refuses_non_finite(case: SyntheticCase, tmp_path: Path, bad: float, extension: str) -> None:
    array = case.image[0].copy()
    array[10, 10, 10] = bad
    path = write_like(array, case.image_path, tmp_path / f"nan{extension}")
    with pytest.raises(InvalidUploadError, match="image holds NaN or infinite values"):
        check_image(path, 1, max_voxels=10**8)


@pytest.mark.parametrize(
    ("spacing", "message"),
    [
        ((64.0, 64.0, 128.0), r"image spacing \(64, 64, 128\) mm is not a scan's: each must be 0.01 to 50.0 mm"),
        ((1e-30, 1.0, 1.0), "is not a scan's"),
    ],
)
def test_check_image_refuses_spacing_no_scan_has(tmp_path: Path, spacing: tuple, message: str) -> None:
    # 512 voxels of 64 x 64 x 128 mm became 256^3 voxels for the network: 155 s and 0.5 GB for an 850-byte file.
    image = sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(tmp_path / "odd.nii.gz"))
    with pytest.raises(InvalidUploadError, match=message):
        check_image(str(tmp_path / "odd.nii.gz"), 1, max_voxels=10**8)


def test_check_image_refuses_an_image_too_large_once_resampled(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((10, 16, 16), np.int16))  # (K, J, I)
    image.SetSpacing((20.0, 20.0, 40.0))
    path = str(tmp_path / "coarse.nii.gz")
    sitk.WriteImage(image, path)
    assert check_image(path, 1, max_voxels=10**6).size == (16, 16, 10)  # 2,560 voxels as stored
    with pytest.raises(InvalidUploadError, match=r"would be 2560000 voxels at the model's spacing of 2 x 2 x 4 mm"):
        check_image(path, 1, max_voxels=10**6, model_spacing=(2, 2, 4))  # 160 x 160 x 100 once resampled


def test_check_image_refuses_flat_volume(case: SyntheticCase, tmp_path: Path) -> None:
    path = write_like(np.zeros((48, 40, 1), np.float32), case.image_path, tmp_path / "flat.nii.gz")
    with pytest.raises(InvalidUploadError, match=r"image size \(48, 40, 1\) is not a 3D volume"):
        check_image(path, 1, max_voxels=10**8)


def test_check_image_refuses_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    with pytest.raises(InvalidUploadError, match="cannot read corrupt.nii.gz"):
        check_image(str(path), 1, max_voxels=10**8)


def test_image_geometry_reads_header(case: SyntheticCase) -> None:
    assert image_geometry(case.image_path) == Geometry.of(sitk.ReadImage(case.image_path))


LABELS = ("tumor", "edema")
SEGMENTS = np.array([0, 1, 2, 1, 0, 2], np.uint8).reshape(1, 2, 3)


@pytest.mark.parametrize(
    ("label_info", "expected"),
    [
        ([{"name": "edema", "idx": 1}, {"name": "tumor", "idx": 2}], [0, 2, 1, 2, 0, 1]),
        ([{"name": "tumor", "idx": 1}, {"name": "edema", "idx": 2}], [0, 1, 2, 1, 0, 2]),
        ([{"name": "EDEMA", "idx": 1}, {"name": "Tumor", "idx": 2}], [0, 2, 1, 2, 0, 1]),
        ([{"name": "edema", "id": 1}, {"name": "tumor", "id": 2}], [0, 2, 1, 2, 0, 1]),
        (
            [{"name": "background", "idx": 0}, {"name": "edema", "idx": 1}, {"name": "tumor", "idx": 2}],
            [0, 2, 1, 2, 0, 1],
        ),
        (
            [{"name": "edema", "idx": 1}, {"name": "tumor", "idx": 2}, {"name": "tumor", "idx": 7}],
            [0, 2, 1, 2, 0, 1],
        ),
        ([{"name": "Background", "idx": 1}, {"name": "tumor", "idx": 2}], [0, 0, 1, 0, 0, 1]),
        ([{"name": "tumor", "idx": 1}, {"name": "tumor", "idx": 2}], [0, 1, 1, 1, 0, 1]),
    ],
    ids=[
        "swapped",
        "same-order",
        "case-insensitive",
        "id-key",
        "background-ignored",
        "unused-entry",
        "background-segment",
        "two-segments-one-name",
    ],
)
def test_remap_label_maps_values_by_name(label_info: list[dict[str, object]], expected: list[int]) -> None:
    remapped = remap_label(SEGMENTS, label_info, LABELS)
    assert remapped.dtype == np.uint8
    assert remapped.ravel().tolist() == expected


def test_remap_label_refuses_unknown_segment() -> None:
    info = [{"name": "edema", "idx": 1}, {"name": "necrosis", "idx": 2}]
    with pytest.raises(
        InvalidUploadError, match="segment 'necrosis' is not a label of this app; accepted: tumor, edema"
    ):
        remap_label(SEGMENTS, info, LABELS)


def test_remap_label_refuses_value_missing_from_label_info() -> None:
    with pytest.raises(InvalidUploadError, match=r"label values \[2\] have no entry in label_info"):
        remap_label(SEGMENTS, [{"name": "edema", "idx": 1}], LABELS)


@pytest.mark.parametrize("idx", [0, 256, -3])
def test_remap_label_refuses_out_of_range_segment_value(idx: int) -> None:
    with pytest.raises(InvalidUploadError, match=f"segment 'tumor' has value {idx}; values 1..255 are accepted"):
        remap_label(SEGMENTS, [{"name": "tumor", "idx": idx}], LABELS)


@pytest.mark.parametrize(
    ("label_info", "message"),
    [
        ("abc", "label_info must be a list"),
        ({"a": 1}, "label_info must be a list"),
        ([1, 2], "label_info must be a list"),
        ([None], "label_info must be a list"),
        ([{"name": 3, "idx": 1}], "segment name 3 is not text"),
        ([{"name": "tumor", "idx": "x"}], "segment 'tumor' has value 'x'; a whole number is needed"),
        ([{"name": "tumor", "idx": 1.7}], "has value 1.7; a whole number"),  # not cut to 1
        ([{"name": "tumor", "idx": True}], "has value True; a whole number"),
        ([{"name": "tumor", "idx": [1]}], "has value \\[1\\]; a whole number"),
        ([{"name": "tumor", "idx": 1, "id": 2}], "has idx 1 and id 2; send one value"),
        ([{"name": "tumor"}], "segment 'tumor' has no value \\(idx or id\\)"),
        ([{"name": "tumor", "idx": 1}, {"name": "edema", "idx": 1}], "value 1 is given to both 'tumor' and 'edema'"),
        (False, "label_info must be a list"),
        (0, "label_info must be a list"),
    ],
)
def test_remap_label_refuses_malformed_label_info(label_info: object, message: str) -> None:
    with pytest.raises(InvalidUploadError, match=message):
        remap_label(SEGMENTS, label_info, LABELS)  # type: ignore[arg-type]


def truncate(path: str, out: Path, keep: float) -> str:
    data = Path(path).read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return str(out)


@pytest.mark.parametrize("extension", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_files_are_refused(case: SyntheticCase, tmp_path: Path, extension: str) -> None:
    """ITK fills a truncated NIfTI with zeros without an error; every format must be refused instead."""
    full = write_like(case.image[0], case.image_path, tmp_path / f"full{extension}")
    check_image(full, 1, max_voxels=10**8)
    cut = truncate(full, tmp_path / f"cut{extension}", keep=0.8)
    with pytest.raises(InvalidUploadError, match="cut"):
        check_image(cut, 1, max_voxels=10**8)
    label = write_like(case.label.astype(np.uint8), case.image_path, tmp_path / f"label{extension}")
    with pytest.raises(InvalidUploadError, match="^label: .*cut"):
        check_label(truncate(label, tmp_path / f"cut{extension}", keep=0.8), case.image_path, 1, max_voxels=10**8)


def test_damaged_gzip_is_refused(case: SyntheticCase, tmp_path: Path) -> None:
    data = bytearray(Path(case.image_path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.nii.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidUploadError, match="flipped.nii.gz .*damaged"):
        check_image(str(path), 1, max_voxels=10**8)


def test_declared_size_over_the_limit_is_refused_from_the_header(tmp_path: Path) -> None:
    """A 1024x1024x256 header with no voxels behind it: refused before anything is allocated."""
    header = sitk.Image(1024, 1024, 256, sitk.sitkUInt8)  # the header of what a tiny file may declare
    full = tmp_path / "big.nii"
    reader_size = 1024 * 1024 * 256
    sitk.WriteImage(header, str(full))
    cut = truncate(str(full), tmp_path / "bomb.nii", keep=400 / (reader_size + 352))
    with pytest.raises(InvalidUploadError, match=r"declares 1024x1024x256 voxels \(268,435,456\); at most 256,000,000"):
        check_image(cut, 1, max_voxels=256_000_000)
    with pytest.raises(InvalidUploadError, match="bomb.nii is truncated"):
        check_image(cut, 1, max_voxels=10**9)


NRRD_DETACHED = b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: /etc/hostname\n\n"
MHA_DETACHED = (
    b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = /etc/hostname\n"
)


@pytest.mark.parametrize(("name", "header"), [("detached.nrrd", NRRD_DETACHED), ("detached.mha", MHA_DETACHED)])
def test_headers_pointing_at_other_files_are_refused(tmp_path: Path, name: str, header: bytes) -> None:
    """Such a header makes ITK read any file on the server as voxels."""
    path = tmp_path / name
    path.write_bytes(header)
    with pytest.raises(InvalidUploadError, match="keeps its voxels in another file"):
        check_image(str(path), 1, max_voxels=10**8)


def test_compression_bombs_are_refused_before_they_are_decompressed(tmp_path: Path) -> None:
    """A 2x2x2 header followed by 64 MiB of zeros (64 kB compressed)."""
    small = tmp_path / "small.nii"
    sitk.WriteImage(sitk.Image(2, 2, 2, sitk.sitkUInt8), str(small))
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(small.read_bytes())
        for _ in range(64):
            f.write(bytes(2**20))
    with pytest.raises(InvalidUploadError, match="holds more data than the 356 bytes its header declares"):
        check_image(str(path), 1, max_voxels=10**8)
