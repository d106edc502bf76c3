"""Network factory: the one place where the tumour network is built."""

from lib.networks.factory import build_network, enable_mc_dropout

__all__ = ["build_network", "enable_mc_dropout"]
