"""The training optimiser: AdamW that skips an update whose gradients are not all finite.

PyTorch's ``GradScaler`` does the same for float16 on CUDA. On CPU, oneDNN's bfloat16 convolution sometimes returns
a non-finite weight gradient when a feature map is only 2 voxels wide, as at SegResNet's deepest level for 16-voxel
patches (not with oneDNN turned off). One such update would turn every weight into NaN for the rest of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


class FiniteAdamW(torch.optim.AdamW):
    """:class:`torch.optim.AdamW` whose ``step`` leaves the weights and moments unchanged when a gradient holds
    NaN or infinity; ``skipped`` counts such steps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skipped = 0

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        # One host-device synchronisation per step, not one per parameter tensor.
        if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            return super().step(closure)
        self.skipped += 1
        logger.warning("Training step skipped: a gradient is not finite (%d skipped in this run)", self.skipped)
        return None
