"""Operations sensors: resource_watch, telegram_commands and the run-failure alert.

Each sensor reads the settings at tick time and keeps its memory in its cursor: the
resource episodes (so an alert goes out once per episode, and once when it clears) and
the Bot API update offset (so a command is obeyed once).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from aivj_assets.data.atomic import write_json_atomic
from aivj_assets.ops import telegram
from aivj_assets.ops.commands import execute, parse_update
from aivj_assets.ops.monitor import watch_resources
from aivj_assets.ops.notifier import Notifier, notify
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.resources import SystemMonitorResource
from aivj_assets.orchestration.runs import (
    fail_if_orphaned,
    logs_location,
    run_log_excerpt,
    with_retry_decision,
)
from aivj_assets.orchestration.status import format_status
from aivj_assets.policy.export import export_champion
from aivj_assets.policy.report import gate_table
from aivj_assets.policy.retention import apply_retention
from aivj_assets.registry import Registry
from aivj_assets.settings import load_settings

MAX_COMMANDS_PER_TICK = 20
COMMANDS_SECONDS_PER_TICK = 30.0


@dg.sensor(name="resource_watch", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="RAM > 85%, CPU > 90% for 5 min, disk < 5 GB free: one alert per episode and one when it "
                       "clears; low disk also prunes old model versions. Writes the champion to AIVJ_EXPORT_PATH "
                       "when an export is pending (the app held the file).")
def resource_watch(context: dg.SensorEvaluationContext, system_monitor: SystemMonitorResource) -> dg.SkipReason:
    """Read the machine, advance the alert episodes kept in the cursor, alert on changes."""
    settings = load_settings()
    readings = system_monitor.monitor().read()
    try:
        state = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        state = {}
    outcome = watch_resources(settings, readings, state, time.time())
    for event, text in outcome.messages:
        context.log.info(f"{event}: {text}")
        notify(settings, event, text)
    if outcome.low_disk_started:
        removed = apply_retention(settings, Registry(settings.models_dir), low_disk=True)
        context.log.info(f"low disk: pruned model versions {removed or 'none'}")
    exported = export_champion(settings, Registry(settings.models_dir), Notifier(settings))
    if exported.status in ("exported", "pending"):
        context.log.info(f"export of champion {exported.version}: {exported.status} {exported.detail}".rstrip())
    context.update_cursor(json.dumps(outcome.state, sort_keys=True))
    return dg.SkipReason(readings.summary().replace("\n", "; "))


@dg.sensor(name="telegram_commands", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Obeys /status, /pause, /resume, /rollback [VERSION], /help from the allowlisted chat and users.")
def telegram_commands(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Poll ``getUpdates`` from the offset in the cursor; obey allowed commands, ignore the rest."""
    settings = load_settings()
    if not telegram.configured(settings):
        return dg.SkipReason("Telegram is not configured (TELEGRAM_TOKEN and TELEGRAM_CHAT_ID)")
    # The cursor is saved only when the tick returns: a tick cut off (Dagster's 60 s limit, a
    # daemon restart) would fetch the commands it obeyed again, and /rollback would move the
    # champion back once more. So the offset is also kept in a file, written before each
    # command is obeyed: a command is obeyed at most once.
    offsets = [int(context.cursor) if context.cursor else None, _saved_offset(settings)]
    offset = max((o for o in offsets if o is not None), default=None)
    try:
        updates = telegram.get_updates(settings, offset, limit=MAX_COMMANDS_PER_TICK)
    except telegram.TelegramError as exc:  # already scrubbed of the token
        return dg.SkipReason(f"getUpdates failed: {exc}")
    obeyed = ignored = 0
    started = time.monotonic()
    for update in updates:
        if time.monotonic() - started > COMMANDS_SECONDS_PER_TICK:
            break  # the rest next tick, well inside the sensor's time limit
        cmd = parse_update(update)
        offset = int(update["update_id"]) + 1
        _save_offset(settings, offset)
        if cmd is not None:
            reply = execute(settings, cmd, status=format_status)
            if reply is None:
                ignored += 1
                context.log.warning(f"ignored /{cmd.name} from user {cmd.user_id} in chat {cmd.chat_id}: not allowlisted")
            else:
                obeyed += 1
                context.log.info(f"obeyed /{cmd.name} from {cmd.user}")
                try:
                    telegram.send_message(settings, reply, chat_id=cmd.chat_id)
                except telegram.TelegramError as exc:
                    context.log.warning(str(exc))
        # Advance after each update: a failure later in the batch never repeats an obeyed command.
        context.update_cursor(str(offset))
    return dg.SkipReason(f"{obeyed} commands obeyed, {ignored} ignored")


def _offset_path(settings) -> Path:
    return settings.state_dir / "telegram_offset.json"


def _saved_offset(settings) -> int | None:
    try:
        return int(json.loads(_offset_path(settings).read_text(encoding="utf-8"))["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_offset(settings, offset: int) -> None:
    write_json_atomic(_offset_path(settings), {"offset": offset})


@dg.run_failure_sensor(name="run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=10,
                       description="Alerts once a run has failed for good (after its retries).")
def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
    """Alert with the error summary and where the logs are, unless a retry is coming."""
    run = with_retry_decision(context.instance, context.dagster_run)
    if run.tags.get(tags.WILL_RETRY) == "true":
        # retry_watch alerts if that retry never launches
        context.instance.add_run_tags(run.run_id, {tags.RETRY_EXPECTED: "true"})
        context.log.info(f"run {run.run_id} failed; the daemon will retry it")
        return
    if run.tags.get(tags.OUTCOME):
        context.log.info(f"run {run.run_id} ended as {run.tags[tags.OUTCOME]}: reported by the run itself")
        return
    errors = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:  # the user's own exception, not Dagster's wrapper
            error = error.cause
        errors.append(f"{event.step_key}: {error.message.strip()}" if error else str(event.message))
    summary = "; ".join(errors) or (context.failure_event.message or "run failed")
    retries = int(run.tags.get(tags.RETRY_NUMBER, "0"))
    logs = logs_location(context.instance, run.run_id)
    settings = load_settings()
    notify(settings, "run_failed",
           f"Run {run.job_name} ({run.run_id[:8]}) failed for good after {retries} retries: {summary[:500]}\nLogs: {logs}",
           details={"run_id": run.run_id, "job": run.job_name, "retries": retries, "logs": logs, "reasons": errors,
                    "gates": _gates_judged_in(settings, run.run_id),
                    "log": run_log_excerpt(context.instance, run.run_id)})


def _gates_judged_in(settings, run_id: str) -> list[dict]:
    """The gate table of a version judged in the failed run, if one was (the failure came after it)."""
    try:
        judged = [e for e in Registry(settings.models_dir).entries() if e.get("judged_in_run") == run_id]
    except (OSError, ValueError):
        return []
    return gate_table(judged[-1]) if judged else []


def _describe_run(run: dg.DagsterRun) -> str:
    what = run.tags.get(tags.PLAN) or run.job_name
    deadline = run.tags.get(tags.DEADLINE)
    return f"{what} (run {run.run_id[:8]})" + (f", window ends {deadline}" if deadline else ", no deadline")


@dg.run_status_sensor(name="training_started_notice", run_status=dg.DagsterRunStatus.STARTED,
                      minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="Tells the owner when a training run starts.")
def training_started_notice(context: dg.RunStatusSensorContext) -> None:
    """"Training started" for runs tagged aivj/training."""
    run = context.dagster_run
    if run.tags.get(tags.TRAINING) == "true":
        notify(load_settings(), "training_started", f"Training started: {_describe_run(run)}.")


@dg.run_status_sensor(name="run_success_notice", run_status=dg.DagsterRunStatus.SUCCESS,
                      minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="Tells the owner when training finishes and when new data was ingested.")
def run_success_notice(context: dg.RunStatusSensorContext) -> None:
    """"Training finished" for training runs, "new data" for runs that stored raw_pairs partitions."""
    run = context.dagster_run
    settings = load_settings()
    if run.tags.get(tags.TRAINING) == "true":
        notify(settings, "training_finished", f"Training run ended: {_describe_run(run)}.")
        return
    records = context.instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    stored = sorted({mat.partition for r in records
                     if (mat := r.event_log_entry.asset_materialization) is not None
                     and mat.asset_key == dg.AssetKey("raw_pairs") and mat.partition})
    if stored:
        notify(settings, "new_data", f"New data ingested: partition {', '.join(stored)} (run {run.run_id[:8]}).")


@dg.sensor(name="orphaned_training_runs", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Fails a training run whose worker process died with its daemon, so its retry resumes "
                       "from the checkpoint and the training slot is free again.")
def orphaned_training_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """A training run left STARTED by a killed daemon would hold the one training slot for ever
    (no launcher finishes it): mark it failed, so run retries and the failure alert take over."""
    instance = context.instance
    runs = instance.get_runs(dg.RunsFilter(tags={tags.TRAINING: "true"}, statuses=[
        dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    gone = []
    for run in runs:
        if fail_if_orphaned(instance, run, "aivj: the training run's worker process is gone (was its daemon killed?)"):
            context.log.warning(f"training run {run.run_id} lost its worker: marked failed")
            gone.append(run)
    return dg.SkipReason(f"{len(runs)} training runs in progress, {len(gone)} orphaned and marked failed")


OPS_SENSORS = [resource_watch, telegram_commands, run_failure_alert, training_started_notice, run_success_notice,
               orphaned_training_runs]
