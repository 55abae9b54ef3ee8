"""Settings: every path, threshold and window of the platform in one typed place (the lowest layer)."""

from aivj_assets.settings.config import (
    ARCHITECTURE,
    BEAT_RULES,
    PROJECT_ROOT,
    Settings,
    architecture_change,
    describe_change,
    env_file_path,
    env_name,
    load_settings,
    version_settings,
)
from aivj_assets.settings.env_file import read_env_file
from aivj_assets.settings.proxy import Proxy
from aivj_assets.settings.secret import Secret

__all__ = ["ARCHITECTURE", "BEAT_RULES", "PROJECT_ROOT", "Proxy", "Secret", "Settings", "architecture_change",
           "describe_change", "env_file_path", "env_name", "load_settings", "read_env_file", "version_settings"]
