"""Shared fixtures: every test gets its own AIVJ_HOME, data folder and DAGSTER_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Keep torch to one thread per test process: CI has 2 cores and tests run real training.
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def aivj_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point every AIVJ and Dagster path at a fresh temporary tree; return its Settings."""
    from aivj_assets.settings import load_settings

    home = tmp_path / "home"
    data = tmp_path / "data"
    dagster_home = tmp_path / "dagster_home"
    for d in (home, data, dagster_home):
        d.mkdir()
    env = {
        "AIVJ_HOME": str(home),
        "AIVJ_DATA_DIR": str(data),
        "DAGSTER_HOME": str(dagster_home),
        "AIVJ_ENV_FILE": str(tmp_path / "no.env"),
        "AIVJ_SETTLE_SECONDS": "0",
    }
    for key in list(os.environ):
        if key.startswith("AIVJ_") or key.startswith("TELEGRAM_") or key.startswith("AIVJ_SMTP"):
            monkeypatch.delenv(key, raising=False)
        if key.lower() in PROXY_VARIABLES:  # a developer's proxy must not stand between the loopback servers
            monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture
def dagster_instance(aivj_env) -> Iterator:
    """A real Dagster instance on the temporary DAGSTER_HOME, with the project's template."""
    import dagster as dg

    from aivj_assets.orchestration.instance import ensure_instance

    ensure_instance(aivj_env)
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def bot_api():
    """A real HTTP server on 127.0.0.1 speaking the Telegram Bot API subset we use."""
    from aivj_assets_tests.loopback import TOKEN, BotApi

    api = BotApi(TOKEN)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def tg_settings(aivj_env, bot_api, monkeypatch: pytest.MonkeyPatch):
    """Environment and Settings with Telegram aimed at the loopback Bot API, no message spacing."""
    from aivj_assets_tests.loopback import telegram_env

    return telegram_env(monkeypatch, bot_api)


@pytest.fixture
def smtp_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A real SMTP server on 127.0.0.1 (aiosmtpd, STARTTLS and login required)."""
    from aivj_assets_tests.loopback import SMTP_PASSWORD, SmtpSink

    sink = SmtpSink(tmp_path, "aivj@example.org", SMTP_PASSWORD)
    # The client verifies the server's certificate: trust the test's self-signed one.
    monkeypatch.setenv("SSL_CERT_FILE", str(sink.cert))
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def http_proxy() -> Iterator:
    """A real HTTP proxy on 127.0.0.1 (CONNECT and plain forwarding) that wants a login."""
    from aivj_assets_tests.loopback import HttpProxy

    proxy = HttpProxy(login=("proxyuser", "proxy-pass-SECRET"))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: CI has two cores shared by the whole suite."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
