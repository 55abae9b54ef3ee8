"""Pause flag and the training loop's go-on/pause/stop decision. (skeleton, issue 5 fills it)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aivj_assets.settings import Settings


def training_control(settings: Settings, deadline: datetime | None = None) -> Callable[[dict[str, Any]], str]:
    """The callable the training loop polls: returns "continue", "pause" or "stop"."""

    def decide(progress: dict[str, Any]) -> str:
        return "continue"

    return decide
