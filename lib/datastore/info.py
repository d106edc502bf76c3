"""What a client may store with an image or a label (an upload's ``params``): its own keys, never the server's.

MONAI Label keeps an upload's ``params`` as the image's or label's info, beside the keys the server writes and
reads back: the active-learning strategies' records, the epistemic score that ranks Next Sample, the file's name
and time. A client that set one of those would break Next Sample for everyone (a ``strategy`` that is not an
object), move its image up the queue (``epistemic_entropy``) or show another image's id (``id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCORE_KEY = "epistemic_entropy"  # epistemic score (lib.scoring.epistemic); MONAI Label's Epistemic ranks by it
MODEL_TS_KEY = "epistemic_ts"  # the weights the score was computed with
# Keys the server writes into an image's or label's info (MONAI Label's datastore and endpoints, and this app).
SERVER_KEYS = frozenset(
    {"id", "name", "path", "ts", "checksum", "strategy", "user", "submitted", SCORE_KEY, MODEL_TS_KEY}
)


class InvalidInfoError(ValueError):
    """An upload's params set a key that only the server writes; the message names it."""


def client_info(params: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``params`` as the info to store with an upload, when it sets none of the server's keys.

    Raises:
        InvalidInfoError: naming the keys and ``what`` was uploaded.
    """
    reserved = sorted(SERVER_KEYS & params.keys())
    if reserved:
        raise InvalidInfoError(
            f"{what} params {', '.join(repr(k) for k in reserved)} are written by the server itself; "
            "remove them from the request"
        )
    return dict(params)
