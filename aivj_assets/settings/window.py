"""The nightly training window in the owner's time zone (no Dagster).

The window is ``settings.window`` ("HH:MM-HH:MM") in ``settings.timezone``; an end at
or before the start means the window crosses midnight. Every function takes ``now`` so
tests (and the training control) can inject their own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from aivj_assets.settings import Settings


@dataclass(frozen=True)
class Window:
    """One occurrence of the nightly window, as time-zone-aware datetimes."""

    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` lies inside ``[start, end)``.

        Compared as instants: two datetimes sharing a tzinfo compare by wall clock, which is
        wrong in the repeated hour when clocks go back (Dagster passes such times, fold=1).
        """
        utc = timezone.utc
        return self.start.astimezone(utc) <= moment.astimezone(utc) < self.end.astimezone(utc)


def utc_now() -> datetime:
    """The real clock, time-zone aware (the default for every ``now`` parameter)."""
    return datetime.now(timezone.utc)


def _occurrence(day: date, start: time, end: time, tz: ZoneInfo) -> Window:
    begin = datetime.combine(day, start, tzinfo=tz)
    end_day = day if end > start else day + timedelta(days=1)
    return Window(begin, datetime.combine(end_day, end, tzinfo=tz))


def current_or_next_window(settings: Settings, now: datetime | None = None) -> Window:
    """The window that contains ``now``, or else the next one to open."""
    now = now or utc_now()
    if now.tzinfo is None:
        raise ValueError(f"now must be time-zone aware, got naive {now.isoformat()}")
    tz = ZoneInfo(settings.timezone)
    start, end = settings.window_bounds
    local_day = now.astimezone(tz).date()
    # Yesterday's occurrence may still be open when the window crosses midnight.
    for offset in (-1, 0, 1, 2):
        window = _occurrence(local_day + timedelta(days=offset), start, end, tz)
        if now < window.end:
            return window
    raise AssertionError("unreachable: a later window always exists")


def open_window(settings: Settings, now: datetime | None = None) -> Window | None:
    """The window open at ``now``, or None outside it."""
    now = now or utc_now()
    window = current_or_next_window(settings, now)
    return window if window.contains(now) else None


CATCH_UP_MINUTES = 10


def cron_for_window(settings: Settings) -> str:
    """The cron line (in ``settings.timezone``) that fires when the window opens and every
    ``CATCH_UP_MINUTES`` while it is open.

    A home PC sleeps, and ``aivj up`` may start after the window opened: a night whose first tick
    was missed still starts its training at the next tick inside the window. Ticks in the opening
    hour before the start (a window opening at 01:30 gives 01:10) find the window closed and skip.
    """
    start, end = settings.window_bounds
    first = start.hour * 60 + start.minute
    length = (end.hour * 60 + end.minute - first) % (24 * 60) or 24 * 60
    last_hour = (first + length - 1) // 60  # the hour holding the window's last minute
    hours = sorted({h % 24 for h in range(start.hour, last_hour + 1)})
    minutes = sorted({(start.minute + m) % 60 for m in range(0, 60, CATCH_UP_MINUTES)})
    return f"{','.join(map(str, minutes))} {','.join(map(str, hours))} * * *"
