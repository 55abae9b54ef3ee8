"""The Bot API client against the loopback Bot API: proxies from .env, 429 waited out, getMe/getChat."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivj_assets.ops import telegram
from aivj_assets.settings import load_settings
from aivj_assets_tests.loopback import OWNER, TOKEN, BotApi, HttpProxy


def _env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str):
    """Settings whose .env holds ``text`` (and nothing of it in the real environment)."""
    env_file = tmp_path / "proxy.env"
    env_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("AIVJ_ENV_FILE", str(env_file))
    return load_settings()


def test_a_proxy_written_only_in_env_carries_the_bot_api_calls(tg_settings, bot_api: BotApi, http_proxy: HttpProxy,
                                                                tmp_path: Path, monkeypatch) -> None:
    settings = _env_file(tmp_path, monkeypatch, f"HTTPS_PROXY={http_proxy.url}\n")
    telegram.send_message(settings, "through the proxy")
    assert bot_api.texts() == ["through the proxy"]
    assert http_proxy.passed == [("POST", f"{bot_api.url}/bot{TOKEN}/sendMessage")]
    assert http_proxy.refused == []  # the proxy's login went with the request

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # NO_PROXY names the Bot API's host: straight there
    telegram.send_message(load_settings(), "around the proxy")
    assert bot_api.texts()[-1] == "around the proxy" and len(http_proxy.passed) == 1


def test_without_a_proxy_setting_the_bot_api_is_called_directly(tg_settings, bot_api: BotApi, http_proxy: HttpProxy,
                                                                 tmp_path: Path, monkeypatch) -> None:
    settings = _env_file(tmp_path, monkeypatch, "AIVJ_SEED=1\n")
    telegram.send_message(settings, "direct")
    assert bot_api.texts() == ["direct"] and http_proxy.passed == []
    # A channel told "direct" ignores HTTPS_PROXY, even one in the real environment.
    monkeypatch.setenv("HTTPS_PROXY", http_proxy.url)
    monkeypatch.setenv("HTTP_PROXY", http_proxy.url)
    monkeypatch.setenv("AIVJ_TELEGRAM_PROXY", "direct")
    telegram.send_message(load_settings(), "still direct")
    assert bot_api.texts()[-1] == "still direct" and http_proxy.passed == []


def test_a_refusing_or_unsupported_proxy_fails_without_showing_its_login(tg_settings, bot_api: BotApi,
                                                                       http_proxy: HttpProxy, monkeypatch) -> None:
    monkeypatch.setenv("AIVJ_TELEGRAM_PROXY", f"http://proxyuser:wrong-SECRET@127.0.0.1:{http_proxy.port}")
    with pytest.raises(telegram.TelegramError) as caught:
        telegram.send_message(load_settings(), "hello")
    assert "407" in str(caught.value) and caught.value.status == 407
    assert "SECRET" not in str(caught.value) and http_proxy.refused and bot_api.sent == []

    monkeypatch.delenv("AIVJ_TELEGRAM_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://me:pw-SECRET@127.0.0.1:1080")
    with pytest.raises(telegram.TelegramError, match="HTTPS_PROXY: a socks5 proxy is not supported") as caught:
        telegram.send_message(load_settings(), "hello")
    assert "SECRET" not in str(caught.value) and bot_api.sent == []


def test_a_429_is_waited_out_as_retry_after_asks(tg_settings, bot_api: BotApi) -> None:
    bot_api.rate_limit_next, bot_api.retry_after = 1, 1
    telegram.send_message(tg_settings, "after the flood")
    assert bot_api.texts() == ["after the flood"]
    (first, _), (second, _) = bot_api.calls
    assert second - first >= 1.0


def test_a_429_asking_too_long_a_wait_or_too_often_fails(tg_settings, bot_api: BotApi, monkeypatch) -> None:
    bot_api.rate_limit_next, bot_api.retry_after = 1, int(telegram.MAX_RETRY_AFTER) + 60
    with pytest.raises(telegram.TelegramError, match="HTTP 429: Too Many Requests") as caught:
        telegram.send_message(tg_settings, "now")
    assert caught.value.status == 429 and len(bot_api.calls) == 1  # no pointless wait, no retry

    bot_api.calls.clear()
    bot_api.rate_limit_next, bot_api.retry_after = 10, 0
    with pytest.raises(telegram.TelegramError, match="HTTP 429"):
        telegram.send_message(tg_settings, "again")
    assert len(bot_api.calls) == telegram.RATE_LIMIT_RETRIES + 1 and bot_api.sent == []


def test_get_me_and_get_chat_prove_the_token_and_the_chat(tg_settings, bot_api: BotApi) -> None:
    assert telegram.get_me(tg_settings)["username"] == "aivj_test_bot"
    assert telegram.get_chat(tg_settings)["id"] == OWNER
    with pytest.raises(telegram.TelegramError, match="chat not found") as caught:
        telegram.get_chat(tg_settings, 999)
    assert caught.value.status == 400
    wrong = tg_settings.replace(telegram_token=type(tg_settings.telegram_token)("999:WRONG-token"))
    with pytest.raises(telegram.TelegramError, match="401") as caught:
        telegram.get_me(wrong)
    assert "WRONG" not in str(caught.value) and caught.value.status == 401
