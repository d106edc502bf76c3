"""Real tumour images from ../shared/data: real sizes, formats and geometry through the served path."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import Compose

from lib.config import parse_config
from lib.datastore.validation import check_label
from lib.infers import SegmentationInfer
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from lib.transforms.pipeline import inference_transforms, validation_transforms
from tests.support.checkpoints import publish_checkpoint

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "..", "shared")
DATA = os.path.join(SHARED, "data")
pytestmark = pytest.mark.skipif(not os.path.isdir(DATA), reason=f"real data folder {DATA} is absent")

CASES = {
    "sts_ct": ("sts/STS_001/CT_image.nii.gz", "sts/STS_001/CT_mask.nii.gz", "ct"),
    "sts_mr": ("sts/STS_001/MR_T1_image.nii.gz", "sts/STS_001/MR_T1_mask.nii.gz", "mr"),
    "brain_nrrd": ("pyradiomics/brain1_image.nrrd", "pyradiomics/brain1_label.nrrd", "mr"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_real_case_is_served_on_its_own_grid(case: str, tmp_path) -> None:
    image_path, label_path = (os.path.join(DATA, p) for p in CASES[case][:2])
    config = parse_config(
        {"modality": CASES[case][2], "features": "8", "model_dir": str(tmp_path), "device": "cpu"}, str(tmp_path)
    )
    publish_checkpoint(
        build_network(config.plan).state_dict(),
        {"run_id": "real"},
        SEGMENTATION.published_path(config.model_dir),
        config,
    )

    result_path, params = SegmentationInfer(config)({"image": image_path, "device": "cpu"})

    result, source = sitk.ReadImage(result_path), sitk.ReadImage(image_path)
    assert result.GetSize() == source.GetSize()
    np.testing.assert_allclose(result.GetSpacing(), source.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(result.GetOrigin(), source.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(result.GetDirection(), source.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(result))) <= {0, 1}
    assert params["label_names"] == {"tumor": 1}

    # The expert outline passes the submit checks, and validation sees what inference sees.
    assert check_label(label_path, image_path, num_labels=1, max_voxels=10**8).sum() > 0
    validation = Compose(validation_transforms(config))({"image": image_path, "label": label_path})
    inference = Compose(inference_transforms(config))({"image": image_path})
    assert np.array_equal(np.asarray(validation["image"]), np.asarray(inference["image"]))
    assert validation["label"].shape == validation["image"].shape
