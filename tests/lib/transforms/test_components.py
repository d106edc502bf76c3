"""nnU-Net's largest-component post-processing: the same removal in validation (one-hot) and inference
(probabilities)."""

from __future__ import annotations

import torch

from lib.transforms.components import KEEP_LARGEST_VALUES, keep_largest_onehot, outside_largest
from lib.transforms.pipeline import PRED, KeepLargestComponentd, argmax_channels


def two_blobs(shape: tuple[int, int, int] = (12, 10, 8)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mask with a 4x4x4 blob and a 2-voxel blob whose voxels touch at a corner only; and each blob alone."""
    big = torch.zeros(shape, dtype=torch.bool)
    big[1:5, 1:5, 1:5] = True
    small = torch.zeros(shape, dtype=torch.bool)
    small[9, 7, 5] = small[10, 8, 6] = True  # one 26-connected component
    return big | small, big, small


def test_outside_largest_is_every_other_component() -> None:
    mask, _, small = two_blobs()
    assert torch.equal(outside_largest(mask), small)
    assert not outside_largest(torch.zeros(5, 5, 5, dtype=torch.bool)).any()
    assert not outside_largest(two_blobs()[1]).any()  # one component: nothing to remove


def test_onehot_removal_makes_background_and_leaves_other_channels() -> None:
    mask, big, small = two_blobs()
    edema = torch.zeros_like(mask)
    edema[6, 1, 1] = edema[6, 8, 6] = True  # two components, but not post-processed
    onehot = torch.stack([~(mask | edema), mask, edema]).float()

    result = keep_largest_onehot(onehot, [1])

    assert torch.equal(result[1].bool(), big)
    assert torch.equal(result[2], onehot[2])
    assert torch.equal(result[0].bool(), ~(big | edema))
    assert torch.all(result.sum(0) == 1)  # still one-hot
    assert torch.equal(onehot[1].bool(), mask)  # the input is untouched


def test_inference_removal_equals_validation_removal() -> None:
    """Post-processing the probabilities gives the labels that validation scored."""
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(3 * torch.randn(3, 14, 12, 10, generator=generator), dim=0)  # speckled labels
    label = argmax_channels(probabilities)[0].long()
    onehot = torch.nn.functional.one_hot(label, 3).permute(3, 0, 1, 2).float()

    result = KeepLargestComponentd(PRED)({PRED: probabilities, KEEP_LARGEST_VALUES: [1, 2]})[PRED]

    expected = keep_largest_onehot(onehot, [1, 2]).argmax(0)
    assert torch.equal(argmax_channels(result)[0].long(), expected)
    assert not torch.equal(expected, label)  # the speckle had components to remove
    kept = expected == label
    torch.testing.assert_close(result[:, kept], probabilities[:, kept])  # the kept voxels keep their probabilities


def test_inference_removal_without_values_changes_nothing() -> None:
    probabilities = torch.softmax(torch.randn(2, 6, 6, 6), dim=0)
    for data in ({PRED: probabilities}, {PRED: probabilities, KEEP_LARGEST_VALUES: []}):
        assert KeepLargestComponentd(PRED)(data)[PRED] is probabilities
