from __future__ import annotations

import logging
import os

import pytest

from lib.auth import Role, UserStore
from lib.config import ConfigError
from lib.server import install
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


@pytest.mark.parametrize("where", ["a-file", "a-file/sub"])
def test_a_model_dir_that_cannot_be_created_is_a_start_up_refusal(make_config, tmp_path, monkeypatch, where) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(install, "server_module", lambda: object())  # as in the server process
    config = make_config(model_dir=str(tmp_path / where))
    with pytest.raises(ConfigError, match=f"^--conf model_dir {tmp_path / where} cannot be created: "):
        install.hold_folders(config, str(tmp_path / "studies"))
