"""``retry_watch``: a failed run whose retry never launched is reported once.

``run_failure_alert`` stays silent about a run Dagster says it will retry (``dagster/will_retry``),
and marks it ``aivj/retry_expected``. The retry daemon can still fail to launch it: the code
location did not load, the job was renamed, the launch raised. Dagster then records an engine
event on the failed run (and, for a launch that raised, turns ``will_retry`` to "false") and
never tries again, so without this sensor nobody would ever be told. A run whose retry has not
appeared ``LAUNCH_GRACE_SECONDS`` after its failure counts as not launched too.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import dagster as dg

from aivj_assets.ops.notifier import notify
from aivj_assets.orchestration import tags
from aivj_assets.settings import load_settings

LAUNCH_GRACE_SECONDS = 300.0  # the retry daemon launches within seconds when it can
LOOKBACK_SECONDS = 3 * 24 * 3600.0  # older failures were dealt with (or alerted) long ago


def _retry_launched(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    retry_id = run.tags.get(tags.AUTO_RETRY_RUN_ID)
    return bool(retry_id) and instance.get_run_by_id(retry_id) is not None


def _why_not(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The retry daemon's own words about this run, after its failure (the last engine event
    that speaks of a retry), or a plain statement when it left none."""
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in reversed(records):
        message = record.event_log_entry.message or ""
        if "retry" in message.lower():
            event = record.event_log_entry.dagster_event
            data = getattr(event, "event_specific_data", None)
            error = getattr(data, "error", None)
            first = (error.message.strip().splitlines() or [""])[0] if error is not None else ""
            return f"{message.strip()}{': ' + first if first else ''}"
    return f"no retry run appeared within {LAUNCH_GRACE_SECONDS:.0f} s of the failure"


def _stranded(instance: dg.DagsterInstance, run: dg.DagsterRun, now: float) -> bool:
    """Whether ``run``'s expected retry will not come: the daemon gave up, or it is overdue."""
    if _retry_launched(instance, run):
        return False
    if run.tags.get(tags.WILL_RETRY) == "false":
        return True
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None and record.end_time else now
    return now - ended > LAUNCH_GRACE_SECONDS


@dg.sensor(name="retry_watch", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts once when a failed run's automatic retry could not be launched.")
def retry_watch(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Alert once for each failed run whose announced retry never launched."""
    instance, now = context.instance, time.time()
    runs = instance.get_runs(dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE], tags={tags.RETRY_EXPECTED: "true"},
        updated_after=datetime.fromtimestamp(now - LOOKBACK_SECONDS, timezone.utc)), limit=200)
    alerted = 0
    for run in runs:
        if run.tags.get(tags.RETRY_ALERTED) or not _stranded(instance, run, now):
            continue
        reason = _why_not(instance, run)
        notify(load_settings(), "run_failed",
               f"Run {run.job_name} ({run.run_id[:8]}) failed and its automatic retry could not be launched: "
               f"{reason[:400]}. Nothing will run it again by itself: re-execute it from the UI, or let the next "
               f"window or file start a new one.")
        instance.add_run_tags(run.run_id, {tags.RETRY_ALERTED: "true"})  # once, across ticks and restarts
        context.log.warning(f"run {run.run_id}: retry not launched ({reason})")
        alerted += 1
    return dg.SkipReason(f"{len(runs)} failed runs expecting a retry, {alerted} newly found stranded")
