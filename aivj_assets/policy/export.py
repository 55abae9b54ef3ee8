"""The champion where the app loads it (``AIVJ_EXPORT_PATH``, e.g. ``D:\\aidata\\coupling_net_best.pth``).

Every change of champion (promotion, import, rollback from the command line, Telegram or the
UI) ends in :func:`export_champion`, and the ``resource_watch`` sensor calls it at each tick,
so an export that could not be written is written as soon as it can. The file is replaced in
one rename, so the app reads the old champion or the new one, never half of either. It is
written in the format of the model the owner imported: a bare state dict, or the same keys
under the wrapper the imported file used (``{"state_dict": ...}``), so an app that loaded the
imported file loads every later champion the same way.

Windows refuses to replace a file another process holds open. The rename is tried again for a
moment; if the app still holds the file, the export is recorded as pending (``state/export.json``),
the owner is told once, and the next tick tries again. The promotion stands either way: the
registry, ``models/latest`` and ``models/coupling_net_best.pth`` already name the new champion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aivj_assets.data.atomic import LockTimeout, file_lock, file_sha256, read_json, write_json_atomic
from aivj_assets.registry import Registry
from aivj_assets.registry.pointers import atomic_copy
from aivj_assets.settings import Settings

STATE_NAME = "export.json"
TRIES = 3  # each try already retries the rename for about 2 s on Windows
RETRY_SECONDS = 1.0

Notify = Callable[[str, str, "dict[str, Any] | None"], None]


@dataclass(frozen=True)
class ExportOutcome:
    """What :func:`export_champion` did: ``off`` (no export path or no champion), ``current``
    (the file already holds the champion), ``exported`` or ``pending`` (the file could not be
    replaced; ``detail`` says why)."""

    status: str
    version: str | None = None
    detail: str = ""


def app_wrapper(registry: Registry) -> str:
    """The key the imported model wrapped its weights under ("" for a bare state dict, or when
    nothing was imported): the newest import's."""
    for entry in reversed(registry.entries()):
        if entry.get("stage") == "import":
            return str(entry.get("app_wrapper") or "")
    return ""


def _state_path(settings: Settings) -> Path:
    return settings.state_dir / STATE_NAME


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(target: Path, registry: Registry, version: str, wrapper: str) -> str:
    """Write ``version``'s weights to ``target`` in the app's format; the written file's sha256."""
    source = registry.weights_path(version)
    if not wrapper:
        atomic_copy(source, target)  # versions are bare state dicts: the same bytes
        return registry.get(version)["model_hash"]
    # torch only for a wrapped export: the sensor that retries exports runs in the daemon,
    # which never imports torch otherwise.
    from aivj_assets.training.model import read_weights, save_app_weights

    state_dict, _ = read_weights(source)
    return save_app_weights(target, state_dict, wrapper)


def _is_current(target: Path, state: dict[str, Any], version: str) -> bool:
    if state.get("version") != version or state.get("path") != str(target) or state.get("pending"):
        return False
    try:
        return file_sha256(target) == state.get("sha256")
    except OSError:
        return False


def export_champion(settings: Settings, registry: Registry, notify: Notify, *, tries: int = TRIES,
                    retry_seconds: float = RETRY_SECONDS) -> ExportOutcome:
    """Write the champion to ``settings.export_path`` unless it is there already; never raises
    for a file the app holds: that is a pending export, retried by the next call."""
    target = settings.export_path
    champion = registry.champion()
    if target is None or champion is None:
        return ExportOutcome("off")
    version = champion["version"]
    try:
        with file_lock(settings.state_dir / ".export.lock"):
            return _export_locked(settings, registry, target, version, notify, tries, retry_seconds)
    except LockTimeout as exc:  # another export holds it (or hangs): the next tick tries again
        return ExportOutcome("pending", version, str(exc))


def _export_locked(settings: Settings, registry: Registry, target: Path, version: str, notify: Notify,
                   tries: int, retry_seconds: float) -> ExportOutcome:
    state = read_json(_state_path(settings), {})
    if _is_current(target, state, version):
        return ExportOutcome("current", version)
    error: OSError | None = None
    for attempt in range(tries):
        try:
            digest = _write(target, registry, version, app_wrapper(registry))
            break
        except OSError as exc:
            error = exc
            if attempt < tries - 1:
                time.sleep(retry_seconds)
    else:
        return _pending(settings, state, target, version, error, notify)
    write_json_atomic(_state_path(settings), {"version": version, "path": str(target), "sha256": digest,
                                              "at": _now()})
    if state.get("pending"):
        notify("export_done", f"champion {version} exported to {target} (pending since {state['pending']['since']})",
               None)
    return ExportOutcome("exported", version)


def _pending(settings: Settings, state: dict[str, Any], target: Path, version: str, error: OSError | None,
             notify: Notify) -> ExportOutcome:
    """Record that ``target`` could not be replaced; tell the owner once per champion."""
    reason = f"{error.__class__.__name__}: {error}" if error else "unknown error"
    before = state.get("pending") or {}
    pending = {"version": version, "since": before.get("since", _now()) if before.get("version") == version else _now(),
               "error": reason}
    write_json_atomic(_state_path(settings), {**state, "pending": pending})
    if before.get("version") != version:
        notify("export_pending",
               f"champion {version} is promoted but not yet exported to {target}: {reason}. "
               f"The app keeps the previous model until the file can be replaced (is the app holding it "
               f"open?); retried every minute.", None)
    return ExportOutcome("pending", version, reason)


def pending_export(settings: Settings) -> dict[str, Any] | None:
    """The export waiting to be written (version, since, error), or None (``aivj status`` shows it)."""
    state = read_json(_state_path(settings), {})
    return state.get("pending") if isinstance(state, dict) else None


def roll_back(settings: Settings, registry: Registry, version: str | None, *, by: str, notify: Notify) -> str:
    """Make ``version`` (default: the previous champion) the champion again and export it; returns it.

    Every way the owner rolls back (command line, Telegram, the UI's rollback job) goes through
    here, so the app's file follows the champion in one step.
    """
    target = registry.rollback(version, by=by)
    export_champion(settings, registry, notify)
    return target
