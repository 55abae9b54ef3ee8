"""Which model versions to keep: the newest, every champion, what a night still needs, and on low
disk only the best. The registry only carries the decision out (:meth:`Registry.prune`)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from aivj_assets.registry import Registry
from aivj_assets.settings import Settings


def prunable(alive: list[dict[str, Any]], *, keep: int, keep_low_disk: int, low_disk: bool,
             protect: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """The versions (of ``alive``, oldest first) whose files may go: all but the ``keep`` newest (on
    low disk: the ``keep_low_disk`` best by elite accuracy), every version that was ever champion,
    ``protect`` and what a night's work still needs (:func:`in_use`)."""
    keepers = {e["version"] for e in alive if e.get("ever_champion")} | set(protect) | in_use(alive)
    others = [e for e in alive if e["version"] not in keepers]
    if low_disk:
        keepers |= {e["version"] for e in sorted(others, key=_elite, reverse=True)[:keep_low_disk]}
    else:  # the registry lists versions in the order they were registered
        keepers |= {e["version"] for e in alive[-keep:]} if keep > 0 else set()
    return {e["version"] for e in others if e["version"] not in keepers}


def in_use(alive: list[dict[str, Any]]) -> set[str]:
    """Versions a night's work still needs: candidates not yet decided (a gate check may be
    about to read them; a crashed run's will be judged again), their parents, and the newest
    warm-up, which a full training resumed over several nights grows from."""
    needed = {e["version"] for e in alive if e.get("status") == "candidate" and e.get("stage") != "warmup"}
    needed |= {e["parent"] for e in alive if e["version"] in needed and e.get("parent")}
    warmups = [e["version"] for e in alive if e.get("stage") == "warmup"]
    return needed | set(warmups[-1:])


def _elite(entry: Mapping[str, Any]) -> float:
    """Elite accuracy as judged on the held-out part; -1 for a version never judged (an undecided
    candidate is kept anyway, :func:`in_use`)."""
    value = (entry.get("measured") or {}).get("elite_accuracy")
    return float(value) if value is not None else -1.0


def apply_retention(settings: Settings, registry: Registry, *, low_disk: bool | None = None) -> list[str]:
    """Prune old versions per the settings; the low-disk rule applies under ``disk_min_free_gb`` free
    (or when ``low_disk`` says so). Returns the versions pruned."""
    if low_disk is None:
        low_disk = shutil.disk_usage(registry.root).free < settings.disk_min_free_gb * 1e9
    return registry.prune(lambda alive: prunable(alive, keep=settings.keep_versions,
                                                 keep_low_disk=settings.keep_versions_low_disk, low_disk=low_disk))
