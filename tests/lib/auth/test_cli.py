"""``tumor-users`` as installed: the console script, password on stdin."""

from __future__ import annotations

import os
import subprocess
import sys

from lib.auth import Role, UserStore

SCRIPT = os.path.join(os.path.dirname(sys.executable), "tumor-users")


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_add_list_remove(tmp_path) -> None:
    path = str(tmp_path / "users.json")
    added = run("--file", path, "add", "alice", "--role", "reviewer", stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert run("--file", path, "add", "bob", "--role", "admin", stdin="battery staple\n").returncode == 0
    assert run("--file", path, "list").stdout.splitlines() == ["alice\treviewer", "bob\tadmin"]
    store = UserStore(path)
    assert store.authenticate("alice", "correct horse").role is Role.REVIEWER

    assert run("--file", path, "remove", "alice").returncode == 0
    assert run("--file", path, "list").stdout.splitlines() == ["bob\tadmin"]


def test_refusals_name_the_problem_and_create_nothing(tmp_path) -> None:
    path = str(tmp_path / "users.json")
    short = run("--file", path, "add", "alice", "--role", "admin", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    assert not os.path.exists(path)
    bad_role = run("--file", path, "add", "alice", "--role", "root", stdin="correct horse\n")
    assert bad_role.returncode == 2 and "invalid choice: 'root'" in bad_role.stderr
    missing = run("--file", path, "remove", "alice")
    assert missing.returncode == 2 and "cannot read the users file" in missing.stderr
