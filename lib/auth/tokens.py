"""Signed, expiring access tokens (JSON Web Tokens, HS256, PyJWT)."""

from __future__ import annotations

import datetime

import jwt

ALGORITHM = "HS256"


class TokenError(ValueError):
    """A token is missing, malformed, wrongly signed or expired; the message says which, for a 401."""


def issue_token(secret: str, username: str, minutes: float, credential: str = "") -> str:
    """A token naming ``username`` that expires ``minutes`` from now.

    ``credential`` stands for the user's password as it was when the token was issued
    (:attr:`lib.auth.users.User.credential`): a token stops working when the password changes or the user is
    removed and added again.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"sub": username, "cred": credential, "iat": now, "exp": now + datetime.timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str, token: str) -> tuple[str, str]:
    """The user name a valid ``token`` was issued to, and the credential it was issued for.

    Raises:
        TokenError: the token is expired, not signed with ``secret`` or not a token of this server.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired: log in again") from None
    except jwt.InvalidTokenError:
        raise TokenError("the token is not valid for this server: log in again") from None
    username, credential = claims["sub"], claims.get("cred", "")
    if not isinstance(username, str) or not username:
        raise TokenError("the token names no user: log in again")
    if not isinstance(credential, str):
        raise TokenError("the token is not valid for this server: log in again")
    return username, credential
