from __future__ import annotations

import logging
import os

import pytest

from lib.auth import Role, UserStore
from lib.config import ConfigError
from lib.server.install import open_users


def test_a_users_file_others_can_read_is_served_with_a_warning(make_config, tmp_path, caplog) -> None:
    path = str(tmp_path / "users.json")
    UserStore.create(path).add("adam", Role.ADMIN, "correct horse")
    config = make_config(users=path)
    with caplog.at_level(logging.WARNING):
        assert open_users(config, "0.0.0.0") is not None
    assert "can be read by other accounts" not in caplog.text  # written owner-only by tumor-users
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        open_users(config, "0.0.0.0")
    assert "can be read by other accounts of this machine (mode 644)" in caplog.text


def test_no_login_beyond_this_machine_unless_told(make_config) -> None:
    assert open_users(make_config(), "127.0.0.1") is None
    with pytest.raises(ConfigError, match="without login"):
        open_users(make_config(), "0.0.0.0")
