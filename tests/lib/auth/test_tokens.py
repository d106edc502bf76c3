from __future__ import annotations

import pytest

from lib.auth import TokenError, issue_token, read_token

SECRET = "s" * 32


def test_a_token_names_its_user_and_credential() -> None:
    assert read_token(SECRET, issue_token(SECRET, "alice", minutes=5, credential="c1")) == ("alice", "c1")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (issue_token(SECRET, "alice", minutes=-1), "expired"),
        (issue_token("a" * 32, "alice", minutes=5), "not valid"),
        ("not-a-token", "not valid"),
        ("", "not valid"),
    ],
)
def test_refuses_expired_foreign_and_malformed_tokens(token: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        read_token(SECRET, token)
