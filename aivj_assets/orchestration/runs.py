"""Reading and marking runs: orphans of a killed daemon, Dagster's retry decision, a failure
that is a normal outcome, and the run's own log for the owner's reports."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import psutil

from aivj_assets.ops.email import LOG_EXCERPT_LINES
from aivj_assets.orchestration import tags

STARTING_GRACE_SECONDS = 30.0  # a healthy launch records its worker pid within seconds
RETRY_DECISION_SECONDS = 2.0  # Dagster tags a failed run will_retry moments after its status


def worker_alive(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the process that reported 'Started process for run (pid: N)' still lives.

    A run launched but with no pid after STARTING_GRACE_SECONDS lost its worker before it
    could report one (the code server died with the daemon).
    """
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        pid = (getattr(data, "metadata", None) or {}).get("pid") if data is not None else None
        if pid is not None:
            try:
                proc = psutil.Process(int(pid.value))
                # A recycled pid belongs to a process started after the run's worker.
                return proc.create_time() <= record.event_log_entry.timestamp + 1 and proc.status() != "zombie"
            except (psutil.NoSuchProcess, ValueError):
                return False
            except psutil.AccessDenied:  # another user's process (a service): it exists
                return True
    if run.status == dg.DagsterRunStatus.STARTING:
        record = instance.get_run_record_by_id(run.run_id)
        started = record.update_timestamp.timestamp() if record and record.update_timestamp else time.time()
        return time.time() - started < STARTING_GRACE_SECONDS
    return True  # no pid recorded (another launcher): leave it to run monitoring


def fail_if_orphaned(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> dg.DagsterRun | None:
    """Mark ``run`` failed when it is starting or started but its worker process is gone (it
    died with its daemon: no launcher will ever finish it); the run as it is now, or None when
    it is not an orphan. The run is read again before: it may have finished since it was listed."""
    active = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
    if run.status not in active or worker_alive(instance, run):
        return None
    now = instance.get_run_by_id(run.run_id)
    if now is None or now.status not in active:
        return None
    instance.report_run_failed(now, message=message)
    return instance.get_run_by_id(run.run_id) or now


def with_retry_decision(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """``run`` once Dagster has decided whether it retries it.

    With run retries on, Dagster stores a failed run's FAILURE status and only then its
    ``dagster/will_retry`` tag, so a reader in between would take a run about to be retried
    for one that failed for good (the data sensor would request it again beside Dagster's own
    retry; the alert would go out early). A failure without the tag is read again for up to
    RETRY_DECISION_SECONDS after it ended; an older one never gets a tag.
    """
    if run.status != dg.DagsterRunStatus.FAILURE or tags.WILL_RETRY in run.tags or not instance.run_retries_enabled:
        return run
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None and record.end_time else time.time()
    while time.time() < ended + RETRY_DECISION_SECONDS:
        time.sleep(0.05)
        now = instance.get_run_by_id(run.run_id)
        if now is None or tags.WILL_RETRY in now.tags:
            return now or run
    return run


def mark_final_outcome(instance: dg.DagsterInstance, run_id: str, outcome: str) -> None:
    """Call from inside a run before it fails on purpose (e.g. ``"gate_rejected"``): the
    failure is then neither retried (``dagster/max_retries`` 0) nor alerted as a crash."""
    instance.add_run_tags(run_id, {tags.OUTCOME: outcome, tags.MAX_RETRIES: "0"})


def logs_location(instance: dg.DagsterInstance, run_id: str) -> str:
    manager = instance.compute_log_manager
    base = getattr(manager, "_base_dir", None) or getattr(manager, "base_dir", None)
    if base:
        return str(Path(base) / run_id / "compute_logs")
    return f"{manager.__class__.__name__} (run {run_id})"




def run_log_excerpt(instance: dg.DagsterInstance, run_id: str, lines: int = LOG_EXCERPT_LINES) -> str:
    """The last ``lines`` messages the run's steps logged (training progress, epochs, verdicts):
    what an email report quotes so the owner sees the run without opening the UI."""
    out = []
    for entry in instance.all_logs(run_id):
        if entry.is_dagster_event or not entry.user_message or entry.level < logging.INFO:
            continue  # Dagster's own events and debug lines (IO managers) are not the run's story
        stamp = datetime.fromtimestamp(entry.timestamp, timezone.utc).strftime("%H:%M:%S")
        out.append(f"{stamp} {entry.step_key or '-'}: {entry.user_message}")
    return "\n".join(out[-lines:])
