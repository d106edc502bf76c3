"""Multi-sequence cases: found from their first sequence in each naming, read on the first sequence's grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lib.transforms.sequences import MissingSequenceError, sequence_files, split_sequence_name
from lib.transforms.volume_io import VolumeReadError, read_case
from tests.synthetic import write_case, write_sequences

SEQUENCES = ("t2f", "t1c", "t1n", "t2w")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/d/BraTS-GLI-00001-000-t2f.nii.gz", ("/d/BraTS-GLI-00001-000", "-")),
        ("/d/BraTS2021_01646_t2f.nii", ("/d/BraTS2021_01646", "_")),
        ("/d/case7/t2f.nrrd", ("/d/case7", "/")),
        ("/d/case7-t1c.nii.gz", None),
        ("/d/t2f.nii.gz", ("/d", "/")),
        ("/d/case7-t2f.txt", None),
    ],
)
def test_first_sequence_names(path: str, expected: tuple[str, str] | None) -> None:
    assert split_sequence_name(path, "t2f") == expected


@pytest.mark.parametrize("layout", ["-", "_", "/"])
def test_a_case_is_read_whole_on_its_first_sequence_grid(tmp_path: Path, layout: str) -> None:
    case = write_sequences(str(tmp_path), "case1", seed=1, sequences=SEQUENCES, layout=layout, coarse=("t1n",))
    assert sequence_files(case.image_path, SEQUENCES)[2].endswith(f"case1{layout}t1n.nii.gz")
    array, geometry = read_case(case.image_path, SEQUENCES)
    assert array.shape == case.image.shape and array.dtype == np.float32
    assert geometry.size == case.image.shape[1:]
    for channel in (0, 1, 3):  # on the first grid already: exact
        np.testing.assert_allclose(array[channel], case.image[channel], rtol=1e-5)
    # t1n was written at twice the spacing: resampled back, it follows the original closely
    inside = (slice(4, -4), slice(4, -4), slice(None))
    correlation = np.corrcoef(array[2][inside].ravel(), case.image[2][inside].ravel())[0, 1]
    assert correlation > 0.8


def test_a_missing_sequence_is_named(tmp_path: Path) -> None:
    case = write_sequences(str(tmp_path), "case2", seed=2, sequences=SEQUENCES)
    os.remove(str(tmp_path / "case2-t1n.nii.gz"))
    with pytest.raises(MissingSequenceError, match=r"case case2 lacks sequence\(s\) t1n \(needs t2f, t1c, t1n, t2w\)"):
        sequence_files(case.image_path, SEQUENCES)
    with pytest.raises(VolumeReadError, match="lacks sequence"):
        read_case(case.image_path, SEQUENCES)


def test_a_stacked_case_is_read_as_it_is(tmp_path: Path) -> None:
    case = write_case(str(tmp_path), "stacked", seed=3, channels=4, modality="mr", label_folder=str(tmp_path / "l"))
    array, _ = read_case(case.image_path, SEQUENCES)
    np.testing.assert_allclose(array, case.image, rtol=1e-5)
