"""The app configuration: the model's plan (:mod:`lib.config.plan`), the run-time settings
(:mod:`lib.config.app_config`) and the ``--conf`` parser (:mod:`lib.config.parse`)."""

import os

from lib.config.app_config import AUTO, AppConfig
from lib.config.parse import ConfigError, parse_config
from lib.config.plan import ModelPlan

# The app folder (``apps/tumor``: the shipped models), for code that builds the app's configuration without a server.
APP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "apps", "tumor")

__all__ = ["APP_DIR", "AUTO", "AppConfig", "ConfigError", "ModelPlan", "parse_config"]
