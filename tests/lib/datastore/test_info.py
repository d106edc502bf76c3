from __future__ import annotations

import pytest

from lib.datastore.info import SERVER_KEYS, InvalidInfoError, client_info


def test_the_clients_own_keys_are_kept() -> None:
    params = {"client_id": "slicer-1", "label_info": [{"name": "tumor", "idx": 1}], "note": "re-outlined"}
    assert client_info(params, "label") == params


@pytest.mark.parametrize("key", ["strategy", "epistemic_entropy", "epistemic_ts", "id", "ts", "name", "user"])
def test_the_servers_keys_are_refused(key: str) -> None:
    # A "strategy" that is not an object broke Next Sample for every annotator; an "id" showed another image's id.
    with pytest.raises(InvalidInfoError, match=f"image params '{key}' are written by the server itself"):
        client_info({"client_id": "x", key: "x"}, "image")


def test_every_key_the_scoring_writes_is_the_servers() -> None:
    from lib.scoring.epistemic import MODEL_TS_KEY, SCORE_KEY

    assert {SCORE_KEY, MODEL_TS_KEY} <= SERVER_KEYS
