"""Every route the server answers, who may call it, and who answers it: the one table of the server's surface.

A request whose method and path match no entry is refused with 404, so a route MONAI Label adds in a later
version is not served until it is reviewed and listed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from lib.auth.roles import Role


class Handler(Enum):
    """Who answers a route."""

    APP = "app"  # this app's own endpoint (lib.server.routes), replacing MONAI Label's
    STOCK = "stock"  # MONAI Label's endpoint, unchanged


@dataclass(frozen=True)
class Rule:
    """One route: the least role that may call it (None: anyone, even without login) and who answers it."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    role: Role | None
    handler: Handler


# Path parameters, each checked against what the app serves before the request reaches an endpoint.
NAME = r"(?P<{}>[^/]+)"
ANNOTATOR, REVIEWER, ADMIN = Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN


def _rule(methods: str, path: str, role: Role | None, handler: Handler) -> Rule:
    regex = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
    regex = re.sub(r"{(\w+)}", lambda m: NAME.format(m.group(1)), regex)
    return Rule(frozenset(methods.split(",")), re.compile(f"^{regex}/?$"), role, handler)


APP, STOCK = Handler.APP, Handler.STOCK
RULES: tuple[Rule, ...] = (
    # Login, as 3D Slicer's module speaks it.
    _rule("GET", "/auth", None, APP),
    _rule("POST", "/auth/token", None, APP),
    _rule("GET", "/auth/token/valid", ANNOTATOR, APP),
    # The annotation loop.
    _rule("GET", "/info", ANNOTATOR, STOCK),
    _rule("POST", "/activelearning/{strategy}", ANNOTATOR, APP),
    _rule("GET", "/datastore", ANNOTATOR, STOCK),
    _rule("GET", "/datastore/image", ANNOTATOR, STOCK),
    _rule("HEAD", "/datastore/image", ANNOTATOR, APP),  # does it exist (and hold these bytes)?
    _rule("GET", "/datastore/image/info", ANNOTATOR, APP),
    _rule("PUT", "/datastore", ANNOTATOR, APP),  # image upload, the path 3D Slicer's client uses
    _rule("PUT", "/datastore/image", ANNOTATOR, APP),
    _rule("PUT", "/datastore/label", ANNOTATOR, APP),  # tags other than final need admin (lib.server.routes.datastore)
    _rule("GET,HEAD", "/datastore/label", REVIEWER, STOCK),
    _rule("GET", "/datastore/label/info", REVIEWER, APP),
    _rule("POST", "/infer/{model}", ANNOTATOR, APP),
    _rule("PUT", "/session", ANNOTATOR, APP),
    _rule("GET,DELETE", "/session/{session_id}", ANNOTATOR, APP),
    _rule("POST", "/train", ANNOTATOR, APP),
    _rule("POST", "/train/{trainer}", ANNOTATOR, APP),
    _rule("GET", "/train", ANNOTATOR, APP),  # MONAI Label's reply, and the pending request
    _rule("DELETE", "/train", ANNOTATOR, APP),
    _rule("GET", "/scoring", ANNOTATOR, STOCK),
    # Administration.
    _rule("DELETE", "/datastore/image", ADMIN, STOCK),
    _rule("DELETE", "/datastore/label", ADMIN, STOCK),
    _rule("GET", "/datastore/dataset", ADMIN, APP),
    _rule("GET", "/model/{model}", ADMIN, STOCK),
    _rule("GET", "/model/info/{model}", ADMIN, STOCK),
    _rule("PUT", "/model/{model}", ADMIN, APP),
    _rule("DELETE", "/model/{model}", ADMIN, APP),  # kept aside, never the shipped starting model
    _rule("POST", "/scoring", ADMIN, APP),  # also how a finished training run asks for scoring
    _rule("POST", "/scoring/{method}", ADMIN, APP),
    _rule("DELETE", "/scoring", ADMIN, STOCK),
    _rule("GET", "/logs", ADMIN, APP),
    _rule("POST", "/batch/infer/{model}", ADMIN, APP),  # pre-segment many images (lib.server.routes.batch)
    _rule("GET", "/batch/infer", ADMIN, STOCK),
    _rule("DELETE", "/batch/infer", ADMIN, STOCK),
    _rule("GET", "/", ADMIN, STOCK),  # API documentation
    _rule("GET", "/docs", ADMIN, STOCK),
    _rule("GET", "/openapi.json", ADMIN, STOCK),
)
# Not served (404): whole-slide inference, the OHIF viewer and its DICOMweb proxy, /reload, image and
# label info updates, GPU info. None is used by 3D Slicer's module for this app.


def find_rule(method: str, path: str) -> tuple[Rule, dict[str, str]] | None:
    """The rule for a request and its path parameters, or None when the server does not serve it."""
    # HEAD is answered as GET (Starlette does), except where a route lists HEAD itself.
    for candidate in (method, "GET") if method == "HEAD" else (method,):
        for rule in RULES:
            match = rule.pattern.match(path)
            if match and candidate in rule.methods:
                return rule, match.groupdict()
    return None
