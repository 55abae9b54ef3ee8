"""Settings: every path, threshold and window of the platform in one typed place (the lowest layer)."""

from aivj_assets.settings.config import (
    ARCHITECTURE,
    BEAT_RULES,
    PROJECT_ROOT,
    Secret,
    Settings,
    architecture_change,
    describe_change,
    env_name,
    load_settings,
    read_env_file,
    version_settings,
)

__all__ = ["ARCHITECTURE", "BEAT_RULES", "PROJECT_ROOT", "Secret", "Settings", "architecture_change",
           "describe_change", "env_name", "load_settings", "read_env_file", "version_settings"]
