"""Put the guard (:mod:`lib.server.guard`) and this app's endpoints in front of MONAI Label's server."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import stat
import sys
from collections.abc import Sequence

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp

from lib.auth import UserFileError, UserStore
from lib.config import AppConfig, ConfigError
from lib.priority import nice_background_jobs
from lib.server.api import create_api
from lib.server.exclusive import hold
from lib.server.guard import Access, Guard
from lib.server.lifeline import end_children_at_exit, follow_server, mark_server
from lib.server.logs import shorten_refusals, use_own_log
from lib.trainers.run_stats import settle_stats, stats_path

logger = logging.getLogger(__name__)

INTERNAL_TOKEN_ENV = "TUMOR_SERVER_TOKEN"  # how the server's own processes authenticate to it


def server_module() -> object | None:
    """MONAI Label's server module when this process is the server (None in a training or scoring process)."""
    return sys.modules.get("monailabel.app")


def short_refusals() -> None:
    """In the server: a start-up refused for its configuration, its users file or a held folder is logged as the
    refusal's message alone, not uvicorn's whole traceback (:class:`lib.server.logs.ShortRefusals`)."""
    if server_module() is not None:
        shorten_refusals((ConfigError, UserFileError))


def hold_folders(app_config: AppConfig, studies: str) -> None:
    """In the server: hold its model folder and its studies folder for itself (:mod:`lib.server.exclusive`).

    Called before the datastore is built, so a second server on either folder stops before it writes anything.
    """
    if server_module() is None:
        return
    port = int(settings.MONAI_LABEL_SERVER_PORT)
    try:
        os.makedirs(app_config.model_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--conf model_dir {app_config.model_dir} cannot be created: {e.strerror}") from None
    hold(app_config.model_dir, "--conf model_dir", port)
    if os.path.isdir(studies):  # a local folder (not a DICOMweb address)
        hold(studies, "the studies folder", port, required=False)


def hold_pacs_cache(folder: str) -> None:
    """In the server: hold the local cache of a PACS datastore (its images, labels and list), as
    :func:`hold_folders` holds a studies folder; by default one folder per PACS address, whichever server uses it."""
    if server_module() is not None:
        hold(folder, "the PACS cache folder (MONAI_LABEL_DICOMWEB_CACHE_PATH)", int(settings.MONAI_LABEL_SERVER_PORT))


def listening_host(argv: Sequence[str]) -> str:
    """The address ``monailabel start_server`` listens on (its ``--host``, default 0.0.0.0)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--host", default="0.0.0.0")
    return parser.parse_known_args(list(argv))[0].host


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_users(app_config: AppConfig, host: str) -> UserStore | None:
    """The users file, or None when login is off; refuses to serve a network without login unless told to."""
    if app_config.users:
        store = UserStore(app_config.users)
        if not store.users():
            raise ConfigError(f"--conf users {app_config.users}: no users yet; add one with tumor-users")
        mode = stat.S_IMODE(os.stat(app_config.users).st_mode)
        if mode & 0o077:  # it holds the key that signs every token: whoever reads it can log in as anyone
            logger.warning(
                "The users file %s can be read by other accounts of this machine (mode %o): it holds the key that "
                "signs login tokens; make it owner-only with 'chmod 600 %s'",
                app_config.users,
                mode,
                app_config.users,
            )
        return store
    if is_loopback(host):
        return None
    if app_config.auth != "off":
        raise ConfigError(
            f"the server would listen on {host} without login. Add users with "
            "'tumor-users --file users.json add NAME --role admin' and start with --conf users users.json, "
            "listen on 127.0.0.1 only, or start with --conf auth off to serve without login"
        )
    logger.warning("Login is OFF and the server listens on %s: anyone who can reach it may do anything", host)
    return None


def secure(instance: MONAILabelApp, app_config: AppConfig) -> None:
    """In the server: login, roles, limits and this app's endpoints. In its background processes: end with it."""
    module = server_module()
    if module is None:
        use_own_log(instance.app_dir, None)  # the server copies this process's output into its own log
        follow_server()
        return
    host = listening_host(sys.argv)
    access = Access.create(open_users(app_config, host))
    # Beside what else this server writes (its weights and runs); the port tells servers on one machine apart.
    log_path = os.path.join(app_config.model_dir, "logs", f"server-{settings.MONAI_LABEL_SERVER_PORT}.log")
    use_own_log(instance.app_dir, log_path)
    mark_server()
    end_children_at_exit()
    nice_background_jobs(app_config.background_niceness)
    settle_stats(stats_path(app_config.model_dir))  # a run left RUNNING by an earlier server has ended
    os.environ[INTERNAL_TOKEN_ENV] = access.internal_token
    logger.info(
        "Login %s; requests up to %d MiB; volumes up to %d voxels; log: %s",
        f"on ({len(access.users.users())} users)" if access.users else "off",
        app_config.max_upload_mb,
        app_config.max_voxels,
        log_path,
    )

    def names() -> dict[str, set[str]]:
        return {
            "model": set(instance._infers),
            "strategy": set(instance._strategies),
            "trainer": set(instance._trainers),
            "method": set(instance._scoring_methods),
        }

    server = module.app  # type: ignore[attr-defined]
    api = create_api(instance, access, log_path, app_config.token_minutes)
    # The server builds its middleware stack on its first message (start-up, which creates this app); it is
    # rebuilt with the guard on the first request.
    server.middleware_stack = None
    server.add_middleware(Guard, app=api, access=access, names=names, max_body_bytes=app_config.max_upload_mb * 2**20)
