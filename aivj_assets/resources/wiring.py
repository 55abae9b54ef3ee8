"""Resources the Definitions carry: the system monitor and the notifier.

Both read the settings when used (not when the code location loads), so a changed
``.env`` or environment reaches them at the next run or tick.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from aivj_assets.resources.monitor import SystemMonitor
from aivj_assets.resources.notifier import Notifier
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


LOG_EXCERPT_LINES = 40


def run_log_excerpt(instance: dg.DagsterInstance, run_id: str, lines: int = LOG_EXCERPT_LINES) -> str:
    """The last ``lines`` messages the run's steps logged (training progress, epochs, verdicts):
    what an email report quotes so the owner sees the run without opening the UI."""
    out = []
    for entry in instance.all_logs(run_id):
        if entry.is_dagster_event or not entry.user_message or entry.level < logging.INFO:
            continue  # Dagster's own events and debug lines (IO managers) are not the run's story
        stamp = datetime.fromtimestamp(entry.timestamp, timezone.utc).strftime("%H:%M:%S")
        out.append(f"{stamp} {entry.step_key or '-'}: {entry.user_message}")
    return "\n".join(out[-lines:])


def build_resources() -> dict:
    """Resource instances keyed by name."""
    return {"system_monitor": SystemMonitorResource(), "notifier": NotifierResource()}
