"""A small Telegram Bot API client: ``sendMessage``, ``getUpdates``, ``getMe`` and ``getChat``.

The token travels only inside the request URL; every error that leaves this module has
it scrubbed, and urllib3's debug log lines have it masked too. The proxy is the one the
settings choose (``AIVJ_TELEGRAM_PROXY``, else ``HTTPS_PROXY`` from the environment or
``.env``), handed to requests explicitly: requests itself would see only the environment's.
A 429 answer is waited out as the Bot API asks (``retry_after``), within bounds.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import requests

from aivj_assets.settings import Settings

TIMEOUT = 10.0
MAX_TEXT = 4000  # Bot API limit is 4096 characters per message
# A 429 is waited out at most this many times, each wait at most MAX_RETRY_AFTER seconds: a
# sensor tick must finish well inside Dagster's 60 s. Asked to wait longer, we fail at once,
# since an earlier try would only be refused again.
RATE_LIMIT_RETRIES = 2
MAX_RETRY_AFTER = 15.0

_BOT_PATH = re.compile(r"/bot[^/\s]+/")


class TelegramError(RuntimeError):
    """A Bot API call failed; the message never contains the token. ``status`` is the HTTP
    status of the answer (None when none came: no network, no proxy, a bad proxy setting)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _MaskBotToken(logging.Filter):
    """urllib3 logs request paths at DEBUG: mask ``/bot<token>/`` before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = _BOT_PATH.sub("/bot********/", str(record.msg))
        return True


_mask = _MaskBotToken()
for _name in ("urllib3.connectionpool", "requests.packages.urllib3.connectionpool"):
    _logger = logging.getLogger(_name)
    if _mask not in _logger.filters:
        _logger.addFilter(_mask)


def scrub(text: str, settings: Settings) -> str:
    """``text`` with every secret of ``settings`` (and any bot path) replaced by stars."""
    for secret in settings.secret_values():
        text = text.replace(secret, "********")
    return _BOT_PATH.sub("/bot********/", text)


def configured(settings: Settings) -> bool:
    """Whether the Telegram channel is set up (token and chat)."""
    return bool(settings.telegram_token.reveal() and settings.telegram_chat_id)


def _proxies(settings: Settings) -> dict[str, str | None]:
    """requests' ``proxies=`` for the Bot API; None values keep the environment's proxies out."""
    try:
        proxy = settings.proxy_for("telegram")
    except ValueError as exc:
        raise TelegramError(str(exc)) from None
    url = proxy.url.reveal() if proxy is not None else None
    return {"http": url, "https": url}


def _post(settings: Settings, method: str, payload: dict[str, Any], timeout: float) -> tuple[requests.Response, Any]:
    url = f"{settings.telegram_api.rstrip('/')}/bot{settings.telegram_token.reveal()}/{method}"
    proxies = _proxies(settings)
    try:
        resp = requests.post(url, json=payload, timeout=timeout, proxies=proxies)
    except requests.RequestException as exc:
        raise TelegramError(scrub(f"Telegram {method} failed: {exc}", settings)) from None
    try:
        return resp, resp.json()
    except ValueError:  # not the Bot API answering: a proxy's or a captive portal's page
        return resp, None


def retry_after(resp: requests.Response, body: Any) -> float | None:
    """The seconds a 429 answer asks us to wait (``parameters.retry_after``); None otherwise."""
    if resp.status_code != 429 or not isinstance(body, dict):
        return None
    wait = (body.get("parameters") or {}).get("retry_after")
    return float(wait) if isinstance(wait, int | float) and wait >= 0 else None


def _call(settings: Settings, method: str, payload: dict[str, Any], timeout: float = TIMEOUT) -> Any:
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        resp, body = _post(settings, method, payload, timeout)
        wait = retry_after(resp, body)
        if wait is None or wait > MAX_RETRY_AFTER or attempt == RATE_LIMIT_RETRIES:
            break
        time.sleep(wait)
    if not resp.ok or not isinstance(body, dict) or not body.get("ok"):
        desc = body.get("description", resp.reason) if isinstance(body, dict) else f"{resp.reason} (not a Bot API answer)"
        raise TelegramError(scrub(f"Telegram {method} failed: HTTP {resp.status_code}: {desc}", settings),
                            status=resp.status_code)
    return body.get("result")


def send_message(settings: Settings, text: str, chat_id: str | int | None = None) -> None:
    """Send ``text`` to the owner's chat (or ``chat_id``); raises TelegramError."""
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 20] + "\n… (cut)"
    _call(settings, "sendMessage",
          {"chat_id": chat_id if chat_id is not None else settings.telegram_chat_id, "text": text,
           "disable_web_page_preview": True})


def get_updates(settings: Settings, offset: int | None, limit: int = 50) -> list[dict[str, Any]]:
    """Pending updates from ``offset`` on (the Bot API confirms everything before it)."""
    payload: dict[str, Any] = {"timeout": 0, "limit": limit, "allowed_updates": ["message"]}
    if offset is not None:
        payload["offset"] = offset
    result = _call(settings, "getUpdates", payload)
    return result if isinstance(result, list) else []


def get_me(settings: Settings) -> dict[str, Any]:
    """The bot the token belongs to (``getMe``): proves the token and the way to the Bot API."""
    result = _call(settings, "getMe", {})
    return result if isinstance(result, dict) else {}


def get_chat(settings: Settings, chat_id: str | int | None = None) -> dict[str, Any]:
    """The owner's chat (or ``chat_id``) as the bot sees it (``getChat``); raises TelegramError
    (status 400, "chat not found") when the bot cannot reach it."""
    result = _call(settings, "getChat", {"chat_id": chat_id if chat_id is not None else settings.telegram_chat_id})
    return result if isinstance(result, dict) else {}
