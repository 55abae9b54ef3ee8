"""Fixtures: settings that use the loopback Bot API server."""

from __future__ import annotations

import pytest

from aivj_assets_tests.resources.loopback import BotApi, telegram_env


@pytest.fixture
def tg_settings(aivj_env, bot_api: BotApi, monkeypatch: pytest.MonkeyPatch):
    """Environment and Settings with Telegram aimed at the loopback Bot API, no message spacing."""
    return telegram_env(monkeypatch, bot_api)
