"""The nightly window: its occurrences in the owner's time zone, across midnight and DST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aivj_assets.settings import load_settings
from aivj_assets.settings.window import cron_for_window, current_or_next_window, open_window

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _settings(window: str = "02:00-06:00", tz: str = "Asia/Shanghai"):
    return load_settings(env={}, env_file=None).replace(window=window, timezone=tz)


def test_inside_the_window_gives_tonights_end() -> None:
    now = datetime(2026, 3, 1, 3, 30, tzinfo=SHANGHAI)
    window = open_window(_settings(), now)
    assert window is not None
    assert window.start == datetime(2026, 3, 1, 2, 0, tzinfo=SHANGHAI)
    assert window.end == datetime(2026, 3, 1, 6, 0, tzinfo=SHANGHAI)


def test_outside_the_window_gives_the_next_night() -> None:
    now = datetime(2026, 3, 1, 6, 0, tzinfo=SHANGHAI)  # the end itself is outside
    assert open_window(_settings(), now) is None
    nxt = current_or_next_window(_settings(), now)
    assert nxt.start == datetime(2026, 3, 2, 2, 0, tzinfo=SHANGHAI)


def test_utc_clock_is_converted_to_the_owners_zone() -> None:
    # 19:00 UTC is 03:00 the next day in GMT+8: inside the window.
    now = datetime(2026, 3, 1, 19, 0, tzinfo=timezone.utc)
    window = open_window(_settings(), now)
    assert window is not None and window.end.astimezone(timezone.utc) == datetime(
        2026, 3, 1, 22, 0, tzinfo=timezone.utc
    )


def test_window_across_midnight() -> None:
    settings = _settings("22:00-02:00")
    late = open_window(settings, datetime(2026, 3, 1, 23, 0, tzinfo=SHANGHAI))
    early = open_window(settings, datetime(2026, 3, 2, 1, 0, tzinfo=SHANGHAI))
    assert late is not None and early is not None and late == early
    assert late.end == datetime(2026, 3, 2, 2, 0, tzinfo=SHANGHAI)


def test_dst_zone_keeps_local_wall_times() -> None:
    settings = _settings("01:00-05:00", "Europe/Berlin")
    # The night of the spring change (29 March 2026): the window still ends at 05:00 local.
    window = open_window(settings, datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc))
    assert window is not None
    assert window.end.astimezone(ZoneInfo("Europe/Berlin")).hour == 5
    # Clocks jump forward that night, so the real window is three hours long.
    utc = timezone.utc
    assert window.end.astimezone(utc) - window.start.astimezone(utc) == timedelta(hours=3)


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        open_window(_settings(), datetime(2026, 3, 1, 3, 0))


def test_cron_fires_at_the_window_start_and_every_ten_minutes_while_it_is_open() -> None:
    assert cron_for_window(_settings("02:00-06:00")) == "0,10,20,30,40,50 2,3,4,5 * * *"
    assert cron_for_window(_settings("02:35-04:00")) == "5,15,25,35,45,55 2,3 * * *"
    assert cron_for_window(_settings("23:00-01:30")) == "0,10,20,30,40,50 0,1,23 * * *"


def test_the_repeated_hour_when_clocks_go_back_is_compared_as_instants() -> None:
    # New York, 2025-11-02: 01:00-01:59 happens twice. The window 01:00-01:45 is the first one
    # (EDT, 05:00-05:45 UTC); Dagster hands the schedule 01:30 of the second pass (fold=1).
    ny = ZoneInfo("America/New_York")
    s = load_settings(env={"AIVJ_TIMEZONE": "America/New_York", "AIVJ_WINDOW": "01:00-01:45"})
    second_pass = datetime(2025, 11, 2, 1, 30, tzinfo=ny, fold=1)
    assert second_pass.astimezone(timezone.utc).hour == 6
    assert open_window(s, second_pass) is None
    first_pass = datetime(2025, 11, 2, 1, 30, tzinfo=ny)
    assert open_window(s, first_pass) is not None


@pytest.mark.parametrize(("name", "value", "message"), [
    ("AIVJ_WINDOW", "2-6", "setting AIVJ_WINDOW='2-6': expected HH:MM-HH:MM"),
    ("AIVJ_WINDOW", "02:00", "setting AIVJ_WINDOW='02:00': expected HH:MM-HH:MM"),
    ("AIVJ_TIMEZONE", "Asia/Shangai", "setting AIVJ_TIMEZONE='Asia/Shangai': not a known time zone"),
])
def test_a_window_or_zone_the_schedule_cannot_use_is_refused_by_name(name, value, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(env={name: value}, env_file=tmp_path / "none")
