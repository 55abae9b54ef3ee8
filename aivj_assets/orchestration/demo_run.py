"""Running a job in this process for ``aivj demo``, and reading back what its steps did.

The command line shows the progress; this module knows the Dagster events it is read from.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from aivj_assets.orchestration import tags
from aivj_assets.orchestration.definitions import defs

_STEP_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}


def step_times(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step of the run, from its STEP_START/STEP_SUCCESS|FAILURE events."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for record in instance.all_logs(run_id, of_type=_STEP_EVENTS):
        step = record.step_key
        if record.dagster_event.event_type == DagsterEventType.STEP_START:
            started[step] = record.timestamp
        elif step in started:
            seconds[step] = record.timestamp - started[step]
    return seconds


def running_step(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The step of the run that started last and has not ended."""
    open_steps: list[str] = []
    for record in instance.all_logs(run_id, of_type=_STEP_EVENTS):
        if record.dagster_event.event_type == DagsterEventType.STEP_START:
            open_steps.append(record.step_key)
        elif record.step_key in open_steps:
            open_steps.remove(record.step_key)
    return open_steps[-1] if open_steps else None


def check_results(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """Every asset check evaluated in the run: asset, check, passed, severity, metadata."""
    out = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = record.dagster_event.event_specific_data
        out.append({
            "asset": ev.asset_key.to_user_string(), "check": ev.check_name, "passed": bool(ev.passed),
            "severity": ev.severity.value,
            "metadata": {k: getattr(v, "value", v) for k, v in (ev.metadata or {}).items()},
        })
    return out


def run_job_watched(instance: dg.DagsterInstance, job_name: str, on_step: Callable[[str], None], *,
                    launched_by: str) -> tuple[str, bool]:
    """Execute one of the project's jobs in this process on ``instance``, calling ``on_step(step)``
    about every second with the step running; (run id, success)."""
    job = defs.resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            try:
                step = running_step(instance, run_id)
                if step is not None:
                    on_step(step)
            except Exception:  # the display must never break the run it watches
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = job.execute_in_process(
            instance=instance, run_id=run_id, raise_on_error=False, tags={tags.LAUNCHED_BY: launched_by},
            # The caller shows its own progress; Dagster's per-event lines stay in the UI.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    finally:
        stop.set()
        watcher.join(timeout=5)
    return run_id, result.success
