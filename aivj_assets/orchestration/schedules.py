"""The ``nightly_training`` schedule: when the window opens, launch what the nightly plan chose.

It ticks at the window's start and every few minutes while the window is open, and launches at
most one training a night (the run key names the night): a night whose first tick was missed
(the PC slept, ``aivj up`` started late) trains from the next tick inside the window. Each tick
is judged by the real clock as well as its scheduled time, so a tick the daemon catches up after
the window closed never starts a training outside it.

The decision is ``policy/nightly.py``'s; here it becomes a run request whose tags
(``tags.py``) carry the window's end (``aivj/deadline``: the training checkpoints and stops
resumably then), the one-training-at-a-time mark, and the plan and its reason for the UI.

A schedule launches one job, so the runs go to ``nightly_training_job`` (every model asset)
with the asset selection of ``full_training`` or ``incremental_training``: the same assets,
checks and tags as those jobs.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import dagster as dg

from aivj_assets.ops.control import PauseFlag
from aivj_assets.orchestration import tags
from aivj_assets.orchestration.jobs import full_training, incremental_training
from aivj_assets.policy.nightly import plan_nightly, read_facts
from aivj_assets.settings import Settings, load_settings
from aivj_assets.settings.window import cron_for_window, open_window, utc_now

_JOBS = {"full_training": full_training, "incremental_training": incremental_training}
nightly_training_job = dg.define_asset_job(
    "nightly_training_job",
    selection=full_training.selection | incremental_training.selection,
    tags=tags.TRAINING_TAGS,
    description="What nightly_training launches: the assets of full_training or of incremental_training.",
)


def _training_in_progress(instance: dg.DagsterInstance) -> str | None:
    key, value = next(iter(tags.TRAINING_TAGS.items()))
    runs = instance.get_runs(dg.RunsFilter(tags={key: value}, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]), limit=1)
    return runs[0].run_id if runs else None


def _tonights_run(instance: dg.DagsterInstance, run_key: str) -> str | None:
    runs = instance.get_runs(dg.RunsFilter(tags={tags.RUN_KEY: run_key}), limit=1)
    return runs[0].run_id if runs else None


def _closed(settings: Settings, tick, now) -> dg.SkipReason:
    local = now.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")
    late = f" (tick scheduled for {tick.isoformat()})" if abs((now - tick).total_seconds()) > 60 else ""
    return dg.SkipReason(f"the training window {settings.window} ({settings.timezone}) is not open at {local}{late}")


def build_nightly_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The schedule for ``settings``' window and time zone (read when the code location loads)."""

    @dg.schedule(name="nightly_training", cron_schedule=cron_for_window(settings),
                 execution_timezone=settings.timezone, job=nightly_training_job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"In {settings.window} ({settings.timezone}), from its start and every few minutes "
                             f"until one training ran that night: full, incremental or skip, with the reason.")
    def nightly_training(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        current = load_settings()  # paths and policies as they are tonight
        now = utc_now()
        tick = context.scheduled_execution_time or now
        window = open_window(current, now)
        if window is None or not window.contains(tick):
            return _closed(current, tick, now)
        run_key = f"nightly-{window.start.date().isoformat()}"
        done = _tonights_run(context.instance, run_key)
        if done:
            return dg.SkipReason(f"tonight's training was launched already (run {done})")
        running = _training_in_progress(context.instance)
        if running:
            return dg.SkipReason(f"a training run is already queued or running ({running})")
        pause = PauseFlag.for_settings(current).state()
        facts = read_facts(current, paused_by=pause.by if pause.paused else None)
        plan = plan_nightly(facts, now, current.full_every_days, current.min_improvement)
        if plan.job is None:
            return dg.SkipReason(plan.reason)
        job = _JOBS[plan.job]
        keys = job.selection.resolve(context.repository_def.asset_graph)
        context.log.info(f"nightly training: {plan.job} ({plan.reason}), deadline {window.end.isoformat()}")
        return dg.RunRequest(
            run_key=run_key,
            asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
            tags={**tags.TRAINING_TAGS, **job.tags, tags.DEADLINE: window.end.isoformat(), tags.PLAN: plan.job,
                  tags.REASON: plan.reason[:200]},
        )

    return nightly_training


SCHEDULES: list = [build_nightly_schedule(load_settings())]
