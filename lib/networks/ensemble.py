"""Several copies of the segmentation network whose softmax outputs are averaged (nnU-Net's ensembling).

An ensemble is one module: its state dict (``members.0.*``, ``members.1.*``, ...) is what a checkpoint holds, and
training, validation, fine-tuning, publishing and epoch-0 validation handle it like any other network. In evaluation
mode its ``forward`` returns the log of the members' mean softmax, so the app's softmax-based metrics see the averaged
prediction; the sliding-window inferer (:class:`lib.transforms.pipeline.SlidingWindow`) runs each member over the
whole volume and averages their softmax outputs, the way cross-validation measured the shipped ensemble.

In training mode ``forward`` returns the members' own outputs side by side on the channel axis, and
:class:`MemberLoss` trains each member on its own loss: the members stay independent models, as they were made
(separate runs, ``lib.trainers.ensemble``) and as nnU-Net's fold models are. Training them on the loss of their
average instead lets members lean on each other's errors ("learner collusion", Jeffares et al., NeurIPS 2023), which
undoes what averaging independent models gains.
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
        """Evaluation: log of the mean of the members' softmax outputs (float32), whose softmax is that mean.
        Training: the members' outputs concatenated on the channel axis (float32; :class:`MemberLoss`)."""
        outputs = torch.cat([member(x).float() for member in self.members], dim=1)
        return outputs if self.training else mean_log_softmax(outputs, len(self.members))


def mean_log_softmax(outputs: torch.Tensor, members: int, dim: int = 1) -> torch.Tensor:
    """Log of the mean softmax of ``members`` outputs concatenated on axis ``dim`` (an :class:`Ensemble`'s
    training output; a batch's axis 1, a decollated sample's axis 0)."""
    log_probabilities = torch.stack([torch.log_softmax(o, dim=dim) for o in outputs.chunk(members, dim=dim)])
    return torch.logsumexp(log_probabilities, dim=0) - math.log(members)


class MemberLoss(nn.Module):
    """The mean of ``loss`` over the members of an :class:`Ensemble`'s training output: each member's gradient is
    its own loss's. With one member, ``loss`` itself.

    Args:
        loss: the loss of one network's output (batch, classes, ...) against the target.
        members: how many outputs the prediction holds side by side on axis 1.
    """

    def __init__(self, loss: nn.Module, members: int) -> None:
        super().__init__()
        self.loss, self.members = loss, members

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.members == 1:
            return self.loss(prediction, target)
        return torch.stack([self.loss(o, target) for o in prediction.chunk(self.members, dim=1)]).mean()


def ensemble_members(network: nn.Module) -> list[nn.Module]:
    """The networks whose outputs ``network`` averages: its members for an :class:`Ensemble`, else itself."""
    return list(network.members) if isinstance(network, Ensemble) else [network]
