"""Build the app's networks from the configuration.

The served network, the trained network, the Monte-Carlo dropout network used for epistemic scoring and the
click-guided network all come from :func:`build_network`, so their architectures cannot drift apart.
"""

from __future__ import annotations

from torch import nn

from lib.config.plan import ModelPlan
from lib.networks.descriptions import SEGMENTATION, NetworkDescription
from lib.networks.ensemble import Ensemble


def build_network(plan: ModelPlan, network: NetworkDescription = SEGMENTATION, dropout: float = 0.0) -> nn.Module:
    """Create the configured network.

    Args:
        plan: the model's plan (architecture, width, image channels, labels).
        network: which of the app's networks (its input and output channels); both share architecture and width.
        dropout: dropout probability; 0 for the served/trained network, ``app_config.dropout`` for MC scoring.

    Returns:
        ``network.members(plan)`` copies of the network in an :class:`~lib.networks.ensemble.Ensemble` when
        above 1 (each with its own weights); otherwise one
        ``SegResNet`` (Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018)
        or a residual ``UNet`` (Kerfoot et al., "Left-ventricle quantification using residual U-Net", STACOM 2018).
    """
    members = network.members(plan)
    if members > 1:
        return Ensemble([_single_network(plan, network, dropout) for _ in range(members)])
    return _single_network(plan, network, dropout)


def _single_network(plan: ModelPlan, network: NetworkDescription, dropout: float) -> nn.Module:
    from monai.networks.nets import SegResNet, UNet

    if plan.network == "segresnet":
        return SegResNet(
            spatial_dims=3,
            init_filters=plan.features,
            in_channels=network.in_channels(plan),
            out_channels=network.out_channels(plan),
            dropout_prob=dropout or None,
            blocks_down=(1, 2, 2, 4),
            blocks_up=(1, 1, 1),
        )
    if plan.network == "unet":
        f = plan.features
        return UNet(
            spatial_dims=3,
            in_channels=network.in_channels(plan),
            out_channels=network.out_channels(plan),
            channels=(f, 2 * f, 4 * f, 8 * f, 16 * f),
            strides=(2, 2, 2, 2),
            num_res_units=2,
            dropout=dropout,
        )
    raise ValueError(f"unknown network {plan.network!r}")


def enable_mc_dropout(network: nn.Module) -> nn.Module:
    """Put the network in eval mode but keep its dropout layers sampling (Monte-Carlo dropout)."""
    network.eval()
    for module in network.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train()
    return network
