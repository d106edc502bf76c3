"""The app configuration: the model's plan (:mod:`lib.config.plan`), the run-time settings
(:mod:`lib.config.app_config`) and the ``--conf`` parser (:mod:`lib.config.parse`)."""

from lib.config.app_config import AUTO, AppConfig
from lib.config.parse import ConfigError, parse_config
from lib.config.plan import ModelPlan

__all__ = ["AUTO", "AppConfig", "ConfigError", "ModelPlan", "parse_config"]
