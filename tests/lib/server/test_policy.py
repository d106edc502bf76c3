from __future__ import annotations

import pytest

from lib.auth import Role
from lib.server.policy import Handler, find_rule

# MONAI Label routes this app does not serve (and so answers 404); every other route of monailabel.app must have
# a rule, so that a route added by a MONAI Label upgrade fails this test instead of being served unreviewed.
NOT_SERVED = {
    ("GET", "/favicon.ico"),
    ("POST", "/reload"),
    ("PUT", "/datastore/image/info"),
    ("PUT", "/datastore/label/info"),
    ("PUT", "/datastore/updatelabelinfo"),
    ("POST", "/infer/wsi/{model}"),
    ("POST", "/infer/wsi_v2/{model}"),
    ("GET", "/logs/gpu"),
    ("GET", "/ohif/{path}"),
}


def stock_routes() -> set[tuple[str, str]]:
    from monailabel.app import app

    return {
        (method.upper(), path.rstrip("/") or "/")
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if "proxy" not in path and "/auth" not in path  # the DICOMweb proxy; login is this app's own
    } | {("GET", "/")}


def test_every_monailabel_route_is_reviewed() -> None:
    routes = stock_routes()
    unreviewed = sorted(r for r in routes if r not in NOT_SERVED and find_rule(r[0], r[1].replace("{", "x{")) is None)
    assert unreviewed == []
    served = sorted(r for r in NOT_SERVED if find_rule(*r) is not None)
    assert served == []


@pytest.mark.parametrize(
    ("method", "path", "role", "handler"),
    [
        ("GET", "/auth/", None, Handler.APP),
        ("POST", "/auth/token", None, Handler.APP),
        ("GET", "/info/", Role.ANNOTATOR, Handler.STOCK),
        ("PUT", "/datastore/", Role.ANNOTATOR, Handler.APP),
        ("GET", "/datastore/label", Role.REVIEWER, Handler.STOCK),
        ("HEAD", "/datastore/label", Role.REVIEWER, Handler.STOCK),
        ("DELETE", "/datastore/image", Role.ADMIN, Handler.STOCK),
        ("PUT", "/model/segmentation", Role.ADMIN, Handler.APP),
        ("GET", "/logs/", Role.ADMIN, Handler.APP),
        ("POST", "/train/segmentation", Role.ANNOTATOR, Handler.APP),
        ("DELETE", "/train/", Role.ANNOTATOR, Handler.APP),
    ],
)
def test_roles_and_handlers(method: str, path: str, role: Role | None, handler: Handler) -> None:
    rule, _ = find_rule(method, path)
    assert (rule.role, rule.handler) == (role, handler)


def test_path_parameters_are_single_segments() -> None:
    assert find_rule("POST", "/infer/segmentation")[1] == {"model": "segmentation"}
    assert find_rule("POST", "/infer/a/b") is None
    assert find_rule("GET", "/session/../etc") is None
    assert find_rule("PATCH", "/info/") is None
