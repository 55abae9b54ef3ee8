"""The project's Dagster instance: install the ``dagster.yaml`` template into DAGSTER_HOME."""

from __future__ import annotations

import os
from pathlib import Path

from aivj_assets.settings import PROJECT_ROOT, Settings

TEMPLATE = PROJECT_ROOT / "dagster.yaml"


def ensure_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME with the project's ``dagster.yaml`` if it has none; export it.

    An existing ``dagster.yaml`` is the owner's and is left alone.
    """
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        tmp = target.with_suffix(f".yaml.{os.getpid()}.tmp")  # the daemon and the CLI may race here
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(TEMPLATE.read_text(encoding="utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
