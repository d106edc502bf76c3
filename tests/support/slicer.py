"""3D Slicer's own HTTP client, as shipped inside the MONAI Label wheel (``MONAILabelLib/client.py``), used as the
module's logic uses it."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

CLIENT = os.path.join(sys.prefix, "monailabel", "plugins", "slicer", "MONAILabel", "MONAILabelLib", "client.py")


def slicer_client_module() -> ModuleType:
    """The module's ``client.py``, loaded from the installed plug-in (not ``monailabel.client``)."""
    spec = importlib.util.spec_from_file_location("slicer_monailabel_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SlicerLogic:
    """``MONAILabelLogic._client()`` of ``MONAILabel.py``: a new client for every call, logged in when the server
    says login is on (token fetched once, checked with ``/auth/token/valid`` before each call).

    A fresh client per call matters: the client's multipart helper writes its Content-Type into the client's
    header dictionary, so one client reused across calls with a token sends a stale boundary.
    """

    def __init__(self, url: str, tmpdir: str, username: str, password: str, client_id: str = "slicer") -> None:
        self.module = slicer_client_module()
        self.url, self.tmpdir, self.client_id = url, tmpdir, client_id
        self.username, self.password = username, password
        self.token: dict[str, Any] | None = None

    def client(self) -> Any:
        client = self.module.MONAILabelClient(self.url, self.tmpdir, self.client_id)
        if client.auth_enabled():
            if self.token:
                client.update_auth(self.token)
            if not self.token or not client.auth_valid_token():
                self.token = client.auth_token(self.username, self.password)
                client.update_auth(self.token)
        return client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


# What the module sends with a scribbles request (its segments, in order) and with every infer request.
LABEL_INFO = [
    {"name": "tumor", "id": 1},
    {"name": "background_scribbles", "id": 2},
    {"name": "foreground_scribbles", "id": 3},
]
SLICER = {"result_extension": ".nrrd", "result_dtype": "uint8"}
