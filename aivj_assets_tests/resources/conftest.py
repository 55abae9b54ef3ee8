"""Fixtures: a Bot API server and an SMTP server on loopback, and settings that use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aivj_assets_tests.resources.loopback import BotApi, SmtpSink, telegram_env

SMTP_PASSWORD = "hunter2-smtp-pass"


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
    return telegram_env(monkeypatch, bot_api)
