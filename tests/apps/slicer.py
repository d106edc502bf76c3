"""3D Slicer's own HTTP client, as shipped inside the MONAI Label wheel (``MONAILabelLib/client.py``)."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

CLIENT = os.path.join(sys.prefix, "monailabel", "plugins", "slicer", "MONAILabel", "MONAILabelLib", "client.py")


def slicer_client_module() -> ModuleType:
    """The module's ``client.py``, loaded from the installed plug-in (not ``monailabel.client``)."""
    spec = importlib.util.spec_from_file_location("slicer_monailabel_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
