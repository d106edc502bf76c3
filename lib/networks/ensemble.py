"""Several copies of the segmentation network whose softmax outputs are averaged (nnU-Net's ensembling).

An ensemble is one module: its state dict (``members.0.*``, ``members.1.*``, ...) is what a checkpoint holds, and
training, validation, fine-tuning, publishing and epoch-0 validation handle it like any other network. Its
``forward`` returns the log of the members' mean softmax, so the app's softmax-based loss and metrics see the
averaged prediction; the sliding-window inferer (:class:`lib.transforms.pipeline.SlidingWindow`) runs each member
over the whole volume and averages their softmax outputs, the way cross-validation measured the shipped ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """Networks with the same inputs and outputs whose predictions are averaged in probability space.

    Args:
        members: at least two networks.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, not {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean of the members' softmax outputs (in float32): its softmax is that mean."""
        log_probabilities = torch.stack([torch.log_softmax(member(x).float(), dim=1) for member in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))


def ensemble_members(network: nn.Module) -> list[nn.Module]:
    """The networks whose outputs ``network`` averages: its members for an :class:`Ensemble`, else itself."""
    return list(network.members) if isinstance(network, Ensemble) else [network]
