"""Notifications to the owner: short Telegram messages, detailed email reports.

Contract used by the assets: ``notify(settings, event, text, details=None)`` never raises.
Telegram gets every message (short text); email gets the ones that carry ``details``
(metrics table, reasons, log excerpt). Each channel is optional; an unconfigured one is
silent, a failing one is logged (secrets scrubbed) and ignored. Messages are
deduplicated (same event and text within ``DEDUP_SECONDS``) and rate-limited (at most
``HOURLY_CAP`` an hour, spaced by ``settings.notify_min_interval_seconds``); the memory
for both lives in ``settings.state_dir`` so the daemon, runs and CLI share it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aivj_assets.data.atomic import file_lock, read_json, write_json_atomic
from aivj_assets.ops import email as email_channel
from aivj_assets.ops import telegram
from aivj_assets.settings import Settings

log = logging.getLogger("aivj.notify")

# The events the platform sends (free text is allowed too; these are the ones it uses).
EVENTS = (
    "new_data", "training_started", "training_finished", "training_failed", "window_closed",
    "gate_rejected", "promoted", "degradation", "paused", "resumed", "resource_alert",
    "resource_clear", "run_failed", "drift",
)
DEDUP_SECONDS = 600.0
HOURLY_CAP = 30
_MAX_WAIT = 5.0  # never hold a caller longer than this for spacing


def _state_path(settings: Settings):
    return settings.state_dir / "notify.json"


def _lock_path(settings: Settings):
    return settings.state_dir / "notify.lock"


def _admit(settings: Settings, event: str, text: str, now: float) -> tuple[bool, int]:
    """Whether to send now (dedup and hourly cap), and how many were suppressed before it.

    Runs, sensors and the CLI send from several processes at once: the memory is read and
    written under a lock, so two of them never both send the same message, and the wait that
    spaces messages holds the others back too.
    """
    with file_lock(_lock_path(settings)):
        return _admit_locked(settings, event, text, now)


def _admit_locked(settings: Settings, event: str, text: str, now: float) -> tuple[bool, int]:
    state = read_json(_state_path(settings), {})
    if not isinstance(state, dict):
        state = {}
    key = hashlib.sha256(f"{event}\n{text}".encode()).hexdigest()[:16]
    seen = {k: t for k, t in (state.get("seen") or {}).items() if now - float(t) < DEDUP_SECONDS}
    sent = [float(t) for t in state.get("sent") or [] if now - float(t) < 3600]
    suppressed = int(state.get("suppressed", 0))
    if key in seen:
        return False, suppressed
    if len(sent) >= HOURLY_CAP:
        state.update(seen=seen, sent=sent, suppressed=suppressed + 1)
        write_json_atomic(_state_path(settings), state)
        return False, suppressed
    wait = min(_MAX_WAIT, settings.notify_min_interval_seconds - (now - sent[-1])) if sent else 0.0
    if wait > 0:
        time.sleep(wait)
    seen[key] = now
    sent.append(time.time())
    write_json_atomic(_state_path(settings), {"seen": seen, "sent": sent, "suppressed": 0})
    return True, suppressed


RETRY_DELAYS = (1.0, 4.0)  # a send that fails fast is tried again after these pauses
FAST_FAILURE_SECONDS = 3.0  # a refusal or an error answer; a slower failure is not retried


def _deliver(settings: Settings, event: str, channel: str, send: Callable[[], Any]) -> bool:
    """``send()``, tried again after a quick transient failure (a 502, a refused connection): the
    message is already counted as sent for deduplication, so one failure would lose it for good.
    A slow failure (a timeout) is not retried: the message may have arrived, and a sensor tick
    must stay well inside Dagster's 60 s limit."""
    for attempt in range(len(RETRY_DELAYS) + 1):
        began = time.monotonic()
        try:
            send()
            return True
        except Exception as exc:
            last = exc
            if attempt < len(RETRY_DELAYS) and time.monotonic() - began < FAST_FAILURE_SECONDS:
                time.sleep(RETRY_DELAYS[attempt])
            else:
                break
    log.warning("%s notification %s failed: %s", channel, event, telegram.scrub(str(last), settings))
    return False


def notify(settings: Settings, event: str, text: str, details: dict[str, Any] | None = None) -> None:
    """Tell the owner about ``event``; a failing or unconfigured channel is ignored."""
    try:
        tg, mail = telegram.configured(settings), email_channel.configured(settings) and details is not None
        if not (tg or mail):
            log.info("notification (no channel configured) %s: %s", event, telegram.scrub(text, settings))
            return
        admitted, suppressed = _admit(settings, event, text, time.time())
        if not admitted:
            log.info("notification %s suppressed (duplicate or over the hourly cap)", event)
            return
        short = f"[AIVJ] {text}"
        if suppressed:
            short += f"\n({suppressed} earlier messages were held back by the rate limit)"
        if tg:
            _deliver(settings, event, "Telegram", lambda: telegram.send_message(settings, short))
        if mail:
            report = email_channel.build_report(settings, event, text, details or {})
            _deliver(settings, event, "email", lambda: email_channel.send_report(settings, report))
    except Exception as exc:  # notify must never fail a run
        log.warning("notification %s dropped: %s", event, telegram.scrub(f"{exc.__class__.__name__}: {exc}", settings))


class Notifier:
    """The owner's channels bound to one settings object: what policy code is handed to tell the
    owner (``notifier(event, text, details)``), so it never reaches for Telegram or SMTP itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, event: str, text: str, details: dict[str, Any] | None = None) -> None:
        """Send ``text`` (and a detailed email when ``details`` is given); never raises."""
        notify(self.settings, event, text, details)
