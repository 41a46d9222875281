"""The one configuration schema for both daemons, its loader and its renderers."""

from rollcap.config.load import DEFAULT_CONFIG_PATH, config_path_from_env, load_config
from rollcap.config.schema import (
    CaptureConfig,
    LogConfig,
    OffloadConfig,
    RollcapConfig,
    SpoolConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CaptureConfig",
    "LogConfig",
    "OffloadConfig",
    "RollcapConfig",
    "SpoolConfig",
    "config_path_from_env",
    "load_config",
]
