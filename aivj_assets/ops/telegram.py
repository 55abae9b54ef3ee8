"""A small Telegram Bot API client: ``sendMessage`` and ``getUpdates`` through requests.

The token travels only inside the request URL; every error that leaves this module has
it scrubbed, and urllib3's debug log lines have it masked too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import requests

from aivj_assets.settings import Settings

TIMEOUT = 10.0
MAX_TEXT = 4000  # Bot API limit is 4096 characters per message

_BOT_PATH = re.compile(r"/bot[^/\s]+/")


class TelegramError(RuntimeError):
    """A Bot API call failed; the message never contains the token."""


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
    for secret in (settings.telegram_token.reveal(), settings.smtp_password.reveal()):
        if secret:
            text = text.replace(secret, "********")
    return _BOT_PATH.sub("/bot********/", text)


def configured(settings: Settings) -> bool:
    """Whether the Telegram channel is set up (token and chat)."""
    return bool(settings.telegram_token.reveal() and settings.telegram_chat_id)


def _call(settings: Settings, method: str, payload: dict[str, Any], timeout: float = TIMEOUT) -> Any:
    url = f"{settings.telegram_api.rstrip('/')}/bot{settings.telegram_token.reveal()}/{method}"
    try:
        resp = requests.post(url, json=payload, timeout=timeout)
        body = resp.json()
    except (requests.RequestException, ValueError) as exc:
        raise TelegramError(scrub(f"Telegram {method} failed: {exc}", settings)) from None
    if not resp.ok or not body.get("ok"):
        desc = body.get("description", resp.reason) if isinstance(body, dict) else resp.reason
        raise TelegramError(scrub(f"Telegram {method} failed: HTTP {resp.status_code}: {desc}", settings))
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
