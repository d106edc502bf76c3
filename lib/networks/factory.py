"""Build the app's networks from the configuration.

The served network, the trained network, the Monte-Carlo dropout network used for epistemic scoring and the
click-guided network all come from :func:`build_network`, so their architectures cannot drift apart.
"""

from __future__ import annotations

from torch import nn

from lib.config import SEGMENTATION, TumorConfig


def build_network(config: TumorConfig, dropout: float = 0.0, model: str = SEGMENTATION) -> nn.Module:
    """Create the configured network.

    Args:
        config: the app configuration (network name, width, input channels, labels).
        dropout: dropout probability; 0 for the served/trained network, ``config.dropout`` for MC scoring.
        model: ``"segmentation"`` (image -> background and labels) or ``"clicks"`` (image and click guidance ->
            background and the clicked object); both share the architecture and width.

    Returns:
        ``SegResNet`` (Myronenko, "3D MRI brain tumor segmentation using autoencoder regularization", BrainLes 2018)
        or a residual ``UNet`` (Kerfoot et al., "Left-ventricle quantification using residual U-Net", STACOM 2018).
    """
    from monai.networks.nets import SegResNet, UNet

    if config.network == "segresnet":
        return SegResNet(
            spatial_dims=3,
            init_filters=config.features,
            in_channels=config.in_channels(model),
            out_channels=config.out_channels(model),
            dropout_prob=dropout or None,
            blocks_down=(1, 2, 2, 4),
            blocks_up=(1, 1, 1),
        )
    if config.network == "unet":
        f = config.features
        return UNet(
            spatial_dims=3,
            in_channels=config.in_channels(model),
            out_channels=config.out_channels(model),
            channels=(f, 2 * f, 4 * f, 8 * f, 16 * f),
            strides=(2, 2, 2, 2),
            num_res_units=2,
            dropout=dropout,
        )
    raise ValueError(f"unknown network {config.network!r}")


def enable_mc_dropout(network: nn.Module) -> nn.Module:
    """Put the network in eval mode but keep its dropout layers sampling (Monte-Carlo dropout)."""
    network.eval()
    for module in network.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train()
    return network
