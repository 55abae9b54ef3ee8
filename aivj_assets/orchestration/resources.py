"""Resources the Definitions carry: the system monitor and the notifier.

Both read the settings when used (not when the code location loads), so a changed
``.env`` or environment reaches them at the next run or tick.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from aivj_assets.ops.monitor import SystemMonitor
from aivj_assets.ops.notifier import Notifier
from aivj_assets.settings import load_settings


class SystemMonitorResource(dg.ConfigurableResource):
    """NVML and psutil readings; without an NVIDIA GPU it says so and keeps working."""

    def monitor(self) -> SystemMonitor:
        """A monitor bound to the current settings."""
        return SystemMonitor(load_settings())


class NotifierResource(dg.ConfigurableResource):
    """Telegram and email to the owner; a failing channel never fails a run."""

    def notify(self, event: str, text: str, details: dict[str, Any] | None = None) -> None:
        """Send ``text`` (and a detailed email when ``details`` is given); never raises."""
        Notifier(load_settings())(event, text, details)


def build_resources() -> dict:
    """Resource instances keyed by name."""
    return {"system_monitor": SystemMonitorResource(), "notifier": NotifierResource()}
