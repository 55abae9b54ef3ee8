"""Notifications to the owner (Telegram, email). (skeleton, issue 5 fills it)

Contract used by the assets: ``notify(settings, event, text, details=None)`` never raises.
"""

from __future__ import annotations

from typing import Any

from aivj_assets.settings import Settings


def notify(settings: Settings, event: str, text: str, details: dict[str, Any] | None = None) -> None:
    """Tell the owner about ``event``; a failing or unconfigured channel is ignored."""
    return None
