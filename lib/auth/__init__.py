"""Login for the server: users with roles in a file, bcrypt password hashes, signed expiring tokens."""

from lib.auth.roles import ROLES, Role, allows
from lib.auth.tokens import TokenError, issue_token, read_token
from lib.auth.users import User, UserFileError, UserStore

__all__ = [
    "ROLES",
    "Role",
    "TokenError",
    "User",
    "UserFileError",
    "UserStore",
    "allows",
    "issue_token",
    "read_token",
]
