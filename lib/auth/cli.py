"""``tumor-users``: manage the users file given to the server with ``--conf users PATH``.

Examples::

    tumor-users --file /srv/tumor/users.json add alice --role annotator   # asks for the password
    echo "$PASSWORD" | tumor-users --file users.json add bob --role admin  # password from stdin
    tumor-users --file users.json list
    tumor-users --file users.json remove alice
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from lib.auth.roles import ROLES, Role
from lib.auth.users import UserFileError, UserStore, check_password, check_username


def _read_password() -> str:
    """The password from the terminal (asked twice) or, when stdin is not a terminal, its first line."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise UserFileError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tumor-users", description="Manage the users who may log in to the server.")
    parser.add_argument("--file", required=True, help="the users file (created by the first 'add')")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user or change a user's role and password (password from stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    remove = commands.add_parser("remove", help="remove a user; their tokens stop working at once")
    remove.add_argument("name")
    commands.add_parser("list", help="list users and their roles")
    args = parser.parse_args(argv)

    try:
        if args.command == "add":
            password = check_password(_read_password())  # checked before a new file is created
            store = UserStore(args.file) if os.path.exists(args.file) else UserStore.create(args.file)
            user = store.add(check_username(args.name), Role.parse(args.role), password.decode("utf-8"))
            print(f"{user.name}: {user.role}")
        elif args.command == "remove":
            UserStore(args.file).remove(args.name)
            print(f"removed {args.name}")
        else:
            for user in UserStore(args.file).users():
                print(f"{user.name}\t{user.role}")
    except UserFileError as e:
        print(f"tumor-users: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
