"""Mixed precision of the networks' forward pass: float16 on CUDA, bfloat16 on CPUs that compute it natively.

CPUs with AVX512-BF16 or AMX run oneDNN's bfloat16 convolutions much faster than float32 (2 cores: the network's
time for a 173x183x85 CT fell from 0.54 to 0.23 s, training from 1.51 to 1.92 samples/s; ``benchmarks.infer_latency``
and ``benchmarks.train_speed``, figures in the README). Elsewhere bfloat16 is emulated and slower, so
``--conf amp auto`` keeps float32 on those CPUs.

Only the forward pass is cast: weights, optimiser state, losses, window blending and everything after the network
stay float32, as with MONAI's ``amp`` on CUDA.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

from lib.config.app_config import AMP_CHOICES

# Private torch.cpu probes (torch >= 2.3): CPU instruction sets with native bfloat16 arithmetic.
_NATIVE_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); probed once per process, not per forward
    pass (every training iteration and sliding window asks)."""
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in _NATIVE_BF16_PROBES)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The dtype of the forward pass on ``device`` for the ``amp`` setting, or None for float32.

    ``auto``: float16 on CUDA; bfloat16 on a CPU with native bfloat16; else float32. ``on``: float16 on CUDA,
    bfloat16 on any CPU. ``off``: float32.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp {amp!r} is not one of {AMP_CHOICES}")
    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (amp == "on" or native_bf16_cpu()):
        return torch.bfloat16
    return None


class MixedPrecision:
    """Calls ``network`` under autocast to ``dtype`` (None: as it is) and returns a float32 output."""

    def __init__(self, network: Callable[..., torch.Tensor], dtype: torch.dtype | None) -> None:
        self.network = network
        self.dtype = dtype

    def __call__(self, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.dtype is None:
            return self.network(inputs, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            output = self.network(inputs, *args, **kwargs)
        return output.float()


class MixedPrecisionInferer(Inferer):
    """The training forward pass: the network on the whole patch batch, under :class:`MixedPrecision`."""

    def __init__(self, amp: str) -> None:
        super().__init__()
        self.amp = amp

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        return MixedPrecision(network, autocast_dtype(self.amp, inputs.device))(inputs, *args, **kwargs)


def describe(amp: str, device: torch.device) -> str:
    """What the ``amp`` setting means on ``device``, for the server's log: e.g. ``"bfloat16 on cpu (amp auto)"``."""
    dtype = autocast_dtype(amp, device)
    return f"{'float32' if dtype is None else str(dtype).removeprefix('torch.')} on {device.type} (amp {amp})"
