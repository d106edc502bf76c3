"""Mixed precision of the forward pass: which dtype where, float32 out, float32 gradients, same labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from monai.losses import DiceCELoss
from monai.transforms import Compose

from lib.checkpoint import load_weights
from lib.config import AppConfig, parse_config
from lib.datastore import TumorDatastore
from lib.networks import build_network, precision
from lib.networks.descriptions import SEGMENTATION
from lib.networks.precision import MixedPrecision, MixedPrecisionInferer, autocast_dtype
from lib.trainers import TrainingRun
from lib.transforms.pipeline import argmax_channels, inference_transforms, sliding_window
from tests.support.annotator import dice
from tests.support.server import APP
from tests.synthetic import write_case

ConfigFactory = Callable[..., AppConfig]
SAMPLE = Path(APP).parents[1] / "sample-data" / "STS_003.nii.gz"
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_uses_bfloat16_only_on_cpus_that_compute_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert autocast_dtype("on", CPU) == torch.bfloat16  # forced, even where emulated
    assert autocast_dtype("off", CPU) is None


def test_cuda_runs_float16_unless_off() -> None:
    assert autocast_dtype("auto", CUDA) == torch.float16
    assert autocast_dtype("on", CUDA) == torch.float16
    assert autocast_dtype("off", CUDA) is None


def test_the_log_line_names_the_dtype_device_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert precision.describe("auto", CPU) == "bfloat16 on cpu (amp auto)"
    assert precision.describe("off", CPU) == "float32 on cpu (amp off)"
    assert precision.describe("auto", CUDA) == "float16 on cuda (amp auto)"


def test_unknown_setting_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"amp 'fp8' is not one of \('auto', 'on', 'off'\)"):
        autocast_dtype("fp8", CPU)


def test_native_probe_matches_torch_cpu_capabilities() -> None:
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert precision.native_bf16_cpu() == expected


def test_bfloat16_forward_pass_computes_in_bfloat16_and_returns_float32(config: AppConfig) -> None:
    network = build_network(config.plan).eval()
    seen: list[torch.dtype] = []
    network.convInit.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    image = torch.rand(1, 1, *config.patch_size)

    with torch.inference_mode():
        mixed = MixedPrecision(network, torch.bfloat16)(image)
        full = MixedPrecision(network, None)(image)

    assert seen == [torch.bfloat16, torch.float32]
    assert mixed.dtype == full.dtype == torch.float32
    difference = (torch.softmax(mixed, 1) - torch.softmax(full, 1)).abs().max()
    assert 0 < difference < 0.05  # rounded to bfloat16's 8 bits, yet the same probabilities to 2 decimals


def test_training_step_under_bfloat16_keeps_float32_weights_and_gradients(make_config: ConfigFactory) -> None:
    # 32x32x16: 16-voxel patches leave 2-voxel maps, where oneDNN's weight gradients may not be finite.
    config = make_config(amp="on", patch_size="32,32,16")
    network = build_network(config.plan)
    image = torch.rand(2, 1, *config.patch_size)
    label = (image > 0.5).float()

    output = MixedPrecisionInferer(config.amp)(image, network)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)(output, label)
    loss.backward()

    assert output.dtype == loss.dtype == torch.float32
    for name, parameter in network.named_parameters():
        assert parameter.dtype == torch.float32, name
        assert parameter.grad is not None and parameter.grad.dtype == torch.float32, name
        assert torch.isfinite(parameter.grad).all(), name


def test_shipped_model_labels_the_same_voxels_in_bfloat16_and_float32() -> None:
    config = parse_config({"device": "cpu"}, APP)
    network = build_network(config.plan).eval()
    load_weights(network, config.checkpoint, config.plan)
    image = Compose(inference_transforms(config))({"image": str(SAMPLE)})["image"][None]
    labels = {}
    for amp in ("on", "off"):
        with torch.inference_mode():
            logits = sliding_window(dataclasses.replace(config, amp=amp))(image, network)
        labels[amp] = argmax_channels(logits[0])[0].numpy() > 0

    assert labels["off"].sum() > 1000  # the model finds the tumour: a real comparison, not two empty masks
    assert dice(labels["on"], labels["off"]) > 0.99


def test_a_bfloat16_training_run_publishes_finite_float32_weights(make_config: ConfigFactory, tmp_path: Path) -> None:
    config = make_config(amp="on", patch_size="32,32,16", epochs="3", click_epochs="0", samples_per_case="2")
    studies = tmp_path / "studies"
    for i in range(3):
        write_case(str(studies), f"case{i}", seed=i, label_folder=str(studies / "labels" / "final"))

    result = TrainingRun(config)({}, TumorDatastore(str(studies), config))

    assert result["status"] == "DONE" and result["epoch"] == 3
    for path in (SEGMENTATION.published_path(config.model_dir), SEGMENTATION.last_path(config.model_dir)):
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        assert all(v.dtype != torch.bfloat16 and torch.isfinite(v).all() for v in state.values()), path
