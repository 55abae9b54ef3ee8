"""Small durable JSON state files (pause flag, progress, notifier memory): atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import write_json_atomic

__all__ = ["read_json", "write_json_atomic"]


def read_json(path: Path, default: Any) -> Any:
    """The JSON in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
