"""Remote control from Telegram: who may command, and what each command does (no Dagster).

Only messages from the owner's chat (``TELEGRAM_CHAT_ID``) *and* from an allowed user
(``AIVJ_TELEGRAM_ALLOWED_USERS``; by default the chat's owner, whose user id equals the
private chat's id) are obeyed; everything else is ignored and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aivj_assets.ops.control import PauseFlag
from aivj_assets.ops.notifier import Notifier
from aivj_assets.policy.export import roll_back
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings

log = logging.getLogger("aivj.commands")

HELP = (
    "/status: current run, progress, champion, resources\n"
    "/pause: checkpoint and pause training\n"
    "/resume: let training go on\n"
    "/rollback [VERSION]: make VERSION (default: the previous champion) the champion again\n"
    "/help: this list"
)


@dataclass(frozen=True)
class Command:
    """One incoming chat message, reduced to what the allowlist and handlers need."""

    update_id: int
    chat_id: str
    user_id: str
    user: str  # username or first name, for "who paused"
    name: str  # "status", "pause", ... ("" when the text is not a command)
    args: list[str]


def parse_update(update: dict[str, Any]) -> Command | None:
    """The command in a Bot API update, or None for updates without a text message."""
    message = update.get("message") or update.get("edited_message")
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return None
    sender = message.get("from") or {}
    words = message["text"].strip().split()
    name = ""
    if words and words[0].startswith("/"):
        name = words[0][1:].split("@", 1)[0].lower()  # "/status@MyBot" in groups
    return Command(
        update_id=int(update["update_id"]),
        chat_id=str((message.get("chat") or {}).get("id", "")),
        user_id=str(sender.get("id", "")),
        user=str(sender.get("username") or sender.get("first_name") or sender.get("id", "?")),
        name=name,
        args=words[1:],
    )


def allowed_users(settings: Settings) -> set[str]:
    """User ids that may command; default: the owner of the private chat."""
    users = {u.strip() for u in settings.telegram_allowed_users.split(",") if u.strip()}
    return users or {settings.telegram_chat_id}


def is_allowed(settings: Settings, cmd: Command) -> bool:
    """Both the chat and the user must be on the allowlist."""
    return bool(settings.telegram_chat_id) and cmd.chat_id == settings.telegram_chat_id \
        and cmd.user_id in allowed_users(settings)


def execute(settings: Settings, cmd: Command, *, status: Callable[[Settings], str]) -> str | None:
    """Obey ``cmd`` if allowed; returns the reply to send, or None when it is ignored. ``status``
    writes the /status reply (the Dagster layer hands in the one that reads its instance)."""
    if not is_allowed(settings, cmd):
        log.warning("ignored Telegram message from user %s in chat %s (not on the allowlist): /%s",
                    cmd.user_id, cmd.chat_id, cmd.name or "(text)")
        return None
    by = f"telegram:{cmd.user}"
    flag = PauseFlag.for_settings(settings)
    try:
        if cmd.name == "status":
            return status(settings)
        if cmd.name == "pause":
            state = flag.pause(by=by)
            return f"Training paused by {state.by} at {state.at}; a running training checkpoints within seconds."
        if cmd.name == "resume":
            state = flag.resume(by=by)
            return f"Training resumed by {state.by} at {state.at}."
        if cmd.name == "rollback":
            version = roll_back(settings, Registry(settings.models_dir), cmd.args[0] if cmd.args else None, by=by,
                                notify=Notifier(settings))
            return f"Champion is now {version} (rolled back by {by})."
        if cmd.name in ("help", "start"):
            return HELP
        return f"Unknown command {('/' + cmd.name) if cmd.name else 'message'}.\n{HELP}"
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        # The owner asked for something impossible (e.g. an unknown version): say why.
        return f"/{cmd.name} failed: {exc}"
