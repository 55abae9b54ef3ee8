"""``aivj status``: one screen on what the platform is doing.

Each part reads its own source (pause flag, registry, store, Dagster instance, machine)
and degrades to ``unknown (reason)`` when that source is missing or damaged: status is
what the owner runs when something is wrong, so it must never crash itself. The Dagster
instance is opened only when one exists.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from aivj_assets.data.store import Store
from aivj_assets.ops.control import PauseFlag, describe_progress, read_progress
from aivj_assets.ops.monitor import read_system
from aivj_assets.orchestration import tags
from aivj_assets.policy.export import pending_export
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings

SHOWN_PARTITIONS = 3  # partition keys named on the line; the rest are counted


def _part(label: str, read: Callable[[], str]) -> str:
    """``label: <what read() says>``, or ``label: unknown (reason)`` if reading fails."""
    try:
        return f"{label}: {read()}"
    except Exception as exc:  # any damaged source must leave the other lines readable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return f"{label}: unknown ({reason[:200]})"


def _paused(settings: Settings) -> str:
    state = PauseFlag.for_settings(settings).state()
    if state.paused:
        return f"yes (by {state.by} at {state.at})"
    return "no" + (f" (resumed by {state.by} at {state.at})" if state.at else "")


def _metric(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


def _champion(settings: Settings) -> str:
    entry = Registry(settings.models_dir).champion()
    if entry is None:
        return f"none yet (no promoted model in {settings.models_dir})"
    m = entry.get("measured") or {}
    return (
        f"{entry['version']} ({entry.get('stage', '?')}, {entry.get('time', '?')[:19]}): "
        f"elite accuracy {_metric(m, 'elite_accuracy')} (gate {settings.elite_min_accuracy:.2f}), "
        f"validation accuracy {_metric(m, 'val_accuracy')} (gate {settings.val_min_accuracy:.2f}), "
        f"F1 {_metric(m, 'f1')}"
    )


def _export(settings: Settings) -> str:
    if settings.export_path is None:
        return "off (set AIVJ_EXPORT_PATH to the file the app loads)"
    pending = pending_export(settings)
    if pending:
        return (f"PENDING: champion {pending['version']} not yet written to {settings.export_path} since "
                f"{pending['since']} ({pending['error']}); retried every minute")
    return f"{settings.export_path}"


def _partitions(settings: Settings) -> str:
    keys = Store(settings).partitions()
    if not keys:
        return f"none ingested (data folder {settings.data_dir})"
    shown = ", ".join(keys[:SHOWN_PARTITIONS]) + (", ..." if len(keys) > SHOWN_PARTITIONS else "")
    return f"{len(keys)} ingested ({shown})"


def _when(ts: float | None) -> str:
    if ts is None:
        return "not started"
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def _has_instance(settings: Settings) -> bool:
    home = Path(settings.dagster_home)
    return (home / "dagster.yaml").is_file() or (home / "storage").is_dir()


def _active_runs(instance, limit: int, tags: dict[str, str] | None = None) -> list:
    """Records of runs queued, starting, started or canceling (newest first)."""
    return list(instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                                        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.CANCELING],
                              tags=tags or {}),
        limit=limit,
    ))


def _runs(settings: Settings) -> str:
    home = Path(settings.dagster_home)
    if not _has_instance(settings):
        return f"unknown (no Dagster instance at {home}; `aivj up` or `aivj demo` creates it)"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        active = _active_runs(instance, 5)
        records = active or instance.get_run_records(limit=1)
        if not records:
            return f"none yet (instance {home})"
        lines = []
        for rec in records:
            run = rec.dagster_run
            lines.append(
                f"{'current' if active else 'last'} {run.job_name} {run.status.value} "
                f"started {_when(rec.start_time)} (run {run.run_id[:8]})"
            )
        return "; ".join(lines)


def _progress(settings: Settings) -> str:
    progress = read_progress(settings)
    if not progress:
        return "no training progress recorded"
    at = progress.get("at", "?")
    # The progress file outlives its run: an ETA is shown only while a training run is active.
    if _has_instance(settings):
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            if not _active_runs(instance, 1, tags.TRAINING_TAGS):
                return f"none running (the last run reported {describe_progress({**progress, 'eta_seconds': None})} at {at})"
    return f"{describe_progress(progress)} (at {at})"


def _resources(settings: Settings) -> str:
    return read_system(settings, cpu_interval=0.2).summary().replace("\n", "; ")


def format_status(settings: Settings) -> str:
    """The ``aivj status`` text: pause flag, champion, partitions, runs, progress, resources."""
    return "\n".join([
        _part("paused", lambda: _paused(settings)),
        _part("champion", lambda: _champion(settings)),
        _part("export", lambda: _export(settings)),
        _part("partitions", lambda: _partitions(settings)),
        _part("runs", lambda: _runs(settings)),
        _part("training", lambda: _progress(settings)),
        _part("resources", lambda: _resources(settings)),
    ])
