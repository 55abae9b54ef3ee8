"""Fixtures: a Bot API server and an SMTP server on loopback, and settings that use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aivj_assets_tests.resources.loopback import BotApi, SmtpSink

TOKEN = "123456:SECRET-token-abcdef"
OWNER = 4242  # the owner's user id; in a private chat it is also the chat id
SMTP_PASSWORD = "hunter2-smtp-pass"


@pytest.fixture
def bot_api() -> Iterator[BotApi]:
    api = BotApi(TOKEN)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def smtp_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path, "aivj@example.org", SMTP_PASSWORD)
    # The client verifies the server's certificate: trust the test's self-signed one.
    monkeypatch.setenv("SSL_CERT_FILE", str(sink.cert))
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def tg_settings(aivj_env, bot_api: BotApi, monkeypatch: pytest.MonkeyPatch):
    """Environment and Settings with Telegram aimed at the loopback Bot API, no message spacing."""
    from aivj_assets.settings import load_settings

    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(OWNER))
    monkeypatch.setenv("AIVJ_TELEGRAM_API", bot_api.url)
    monkeypatch.setenv("AIVJ_NOTIFY_MIN_INTERVAL_SECONDS", "0")
    return load_settings()
