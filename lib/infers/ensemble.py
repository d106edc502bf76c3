"""Auto segmentation by several checkpoints of the segmentation network at once (an ensemble of fold models)."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from lib.config import AppConfig
from lib.infers.segmentation import SegmentationInfer
from lib.transforms.components import KEEP_LARGEST


class EnsembleSegmentationInfer(SegmentationInfer):
    """:class:`SegmentationInfer` with the softmax outputs of several checkpoints averaged (nnU-Net's ensembling;
    the app's inferer averages the members of a :class:`torch.nn.ModuleList`). A label keeps only its largest
    component when the validation of every member chose it. Used to measure ensembles by cross-validation
    (:mod:`lib.trainers.crossval`); each member costs one more forward pass.

    Args:
        app_config: the app configuration (its network, labels and preprocessing are every member's).
        checkpoints: the members' weights files.
    """

    def __init__(self, app_config: AppConfig, checkpoints: list[str]) -> None:
        if len(checkpoints) < 2:
            raise ValueError(f"an ensemble needs at least 2 checkpoints, not {checkpoints}")
        super().__init__(app_config)
        self.checkpoints = list(checkpoints)

    def get_path(self, validate: bool = True) -> str | None:
        return self.checkpoints[0]

    def network_for(self, device: str) -> tuple[nn.Module, dict[str, Any]]:
        with self._lock:
            if device not in self._loaded:
                members, metas = zip(*(self.load_network(path, device) for path in self.checkpoints))
                chosen = [n for n in metas[0].get(KEEP_LARGEST, []) if all(n in m.get(KEEP_LARGEST, []) for m in metas)]
                names = ", ".join(os.path.basename(p) for p in self.checkpoints)
                meta = {**metas[0], KEEP_LARGEST: chosen, "checkpoint": names}
                self._loaded[device] = (nn.ModuleList(members), names, 0, meta)
            network, _, _, meta = self._loaded[device]
            return network, meta
