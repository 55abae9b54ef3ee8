"""The ``nightly_training`` schedule: at the window's start, choose full, incremental or skip.

Runs it launches carry two tags (engineer C's model assets and dagster.yaml read them):
- ``aivj/deadline``: the window's end, ISO-8601 with offset; training checkpoints and ends
  resumably then (``training_control``); runs launched by hand have no deadline.
- ``aivj/training: "true"`` (``jobs.TRAINING_TAGS``): dagster.yaml's run queue allows one
  run with this tag at a time.
plus ``aivj/plan`` (full | incremental) and ``aivj/reason`` so the UI shows why.

A schedule launches one job, so the runs go to ``nightly_training_job`` (every model asset)
with the asset selection of ``full_training`` or ``incremental_training``: the same assets,
checks and tags as those jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from aivj_assets.jobs import TRAINING_TAGS, full_training, incremental_training
from aivj_assets.resources.control import PauseFlag
from aivj_assets.settings import Settings, architecture_change, describe_change, load_settings
from aivj_assets.window import cron_for_window_start, open_window

DEADLINE_TAG = "aivj/deadline"
PLAN_TAG = "aivj/plan"
REASON_TAG = "aivj/reason"


@dataclass(frozen=True)
class TrainingFacts:
    """What the nightly decision looks at, read from the pause flag, store and registry."""

    paused_by: str | None  # who paused, or None when not paused
    stored: list[str]  # partition keys in the store
    champion: str | None  # champion version id
    champion_partitions: list[str]  # partitions in the champion's data manifest
    last_full_at: datetime | None  # when a full-stage version was last trained or judged again
    last_improvement: float | None  # relative gain of the newest candidate (None: unknown)
    # (version, status) when the incremental stage would only reuse a version already rejected
    # or rolled back (same champion, new partitions and settings)
    incremental_done: tuple[str, str] | None = None
    rolled_back: str | None = None  # the newest trained version, when the owner rolled it back
    architecture_change: str = ""  # how the settings' model shape differs from the champion's
    # (version, status, partitions) of the newest full version with the settings' shape, if any
    new_shape_full: tuple[str, str, list[str]] | None = None
    new_training_rows: int | None = None  # training rows in the new partitions (None: not counted)


@dataclass(frozen=True)
class Plan:
    job: str | None  # "full_training", "incremental_training", or None to skip
    reason: str


def new_partitions(stored: list[str] | set[str], champion_partitions: list[str] | set[str]) -> list[str]:
    """Stored partitions the champion has not been trained on, sorted."""
    seen = set(champion_partitions)
    return sorted(k for k in stored if k not in seen)


def plan_nightly(facts: TrainingFacts, now: datetime, full_every_days: int, min_improvement: float) -> Plan:
    """Full when there is no champion or the last full training is too old, incremental when
    partitions are new, otherwise skip when the last improvement was under ``min_improvement``."""
    if facts.paused_by is not None:
        return Plan(None, f"training is paused (by {facts.paused_by}); /resume or `aivj resume` to go on")
    if not facts.stored:
        return Plan(None, "no data ingested yet")
    if facts.champion is None:
        return Plan("full_training", "no champion yet")
    if facts.architecture_change:
        tried = facts.new_shape_full
        if tried and tried[1] != "candidate" and not new_partitions(facts.stored, tried[2]):
            return Plan(None, f"the model's architecture changed since champion {facts.champion} "
                              f"({facts.architecture_change}); {tried[0]} with the new shape was {tried[1]}: "
                              "waiting for new data")
        return Plan("full_training", f"the model's architecture changed since champion {facts.champion} "
                                     f"({facts.architecture_change}): a new lineage")
    if facts.last_full_at is None:
        return Plan("full_training", f"champion {facts.champion} has no full training behind it")
    age = now - facts.last_full_at
    if age >= timedelta(days=full_every_days):
        return Plan("full_training", f"last full training {age.days} days ago (every {full_every_days} days)")
    new = new_partitions(facts.stored, facts.champion_partitions)
    if new and facts.incremental_done:
        version, status = facts.incremental_done
        return Plan(None, f"{len(new)} new partition(s) since {facts.champion}, already trained as {version} "
                          f"({status}): waiting for more data; launch incremental_training to judge it again")
    if new and facts.new_training_rows == 0:
        return Plan(None, f"{len(new)} new partition(s) since {facts.champion} hold no training rows (their rows "
                          "are bad, validation or elite judging rows): waiting for more data")
    if new:
        shown = ", ".join(new[:3]) + (", ..." if len(new) > 3 else "")
        return Plan("incremental_training", f"{len(new)} new partitions since {facts.champion}: {shown}")
    if facts.rolled_back:  # its gain is not a reason to train again: the owner turned it down
        return Plan(None, f"nothing new since {facts.champion}; the last training, {facts.rolled_back}, was rolled "
                          "back: waiting for new data")
    if facts.last_improvement is not None and facts.last_improvement < min_improvement:
        return Plan(None, f"nothing new since {facts.champion} and the last improvement was "
                          f"{facts.last_improvement:+.2%} (< {min_improvement:.1%})")
    gain = "unknown" if facts.last_improvement is None else f"{facts.last_improvement:+.2%}"
    return Plan("full_training", f"no new data, but the last training improved by {gain}: train again")


def _score(entry: dict) -> float | None:
    metrics = entry.get("measured") or entry.get("metrics") or {}
    value = metrics.get("elite_accuracy", metrics.get("val_accuracy"))
    return float(value) if isinstance(value, (int, float)) else None


def _gain(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else (new - old) / old


def _paired_gain(entry: dict) -> float | None:
    """A judged version's gain over the champion it was judged against, relative to the champion's
    accuracy, from the same gate rows measured at the same time (None when it was never judged so)."""
    pair = entry.get("paired") or {}
    champion = (entry.get("champion_measured") or {}).get("val_accuracy")
    return pair["gain"] / champion if "gain" in pair and champion else None


def read_facts(settings: Settings) -> TrainingFacts:
    """The decision's inputs from the pause flag, the store and the registry."""
    from aivj_assets.data.store import Store
    from aivj_assets.registry import Registry

    flag = PauseFlag.for_settings(settings).state()
    registry = Registry(settings.models_dir)
    if registry.registry_path.is_file():
        # A promotion or rollback killed between the registry's save and its pointers leaves
        # coupling_net_best.pth and latest on the old champion: put them right every night.
        registry.repair()
    doc = registry.load()
    versions = doc.get("versions", {})
    champion = doc.get("champion")
    champion_partitions: list[str] = []
    change = ""
    if champion:
        meta = registry.meta(champion)
        champion_partitions = list(meta.get("data_partitions") or [])
        change = describe_change(architecture_change(settings, meta))
    trained = [e for e in versions.values() if e.get("stage") in ("full", "incremental")]
    fulls = [e for e in trained if e.get("stage") == "full"]
    # A full stage that reused its version (nothing changed) judged it again: that counts as the
    # full training of its period, so an unchanged recipe is not judged again every night.
    last_full_at = max((datetime.fromisoformat(e.get("judged_at") or e["time"]) for e in fulls), default=None)
    improvement = None
    rolled_back = None
    if trained:
        newest = trained[-1]
        rolled_back = newest["version"] if newest.get("status") == "rolled_back" else None
        improvement = _paired_gain(newest)  # won or lost, its paired gain over its champion is the news
        if improvement is None and newest["version"] == champion:  # it won: its gain over the champion it replaced
            previous = next((ev.get("previous") for ev in reversed(doc.get("events", []))
                             if ev.get("action") == "promote" and ev.get("version") == champion), None)
            improvement = _gain(_score(newest), _score(versions.get(previous or "", {})))
        elif improvement is None and champion:  # it lost (or was never judged): its gain over the champion
            improvement = _gain(_score(newest), _score(versions[champion]))
    stored = Store(settings).partitions()
    shaped = _newest_full_of_this_shape(settings, registry, fulls) if change else None
    fresh = new_partitions(stored, champion_partitions) if champion else []
    done = _incremental_done(settings, registry) if fresh else None
    training_rows = _training_rows(settings, fresh) if fresh and not done else None
    return TrainingFacts(
        paused_by=flag.by if flag.paused else None, stored=stored, champion=champion,
        champion_partitions=champion_partitions, last_full_at=last_full_at, last_improvement=improvement,
        incremental_done=done, rolled_back=rolled_back, architecture_change=change, new_shape_full=shaped,
        new_training_rows=training_rows,
    )


def _training_rows(settings: Settings, keys: list[str]) -> int:
    """How many training rows the partitions ``keys`` hold (the incremental stage's new rows)."""
    from aivj_assets.stages import training_row_count

    return training_row_count(settings, keys)


def _newest_full_of_this_shape(settings: Settings, registry, fulls: list[dict]) -> tuple[str, str, list[str]] | None:
    """The newest full version trained with the settings' architecture: after a change of shape,
    once it was judged, training the same data again would only judge it again."""
    for entry in reversed(fulls):
        try:
            meta = registry.meta(entry["version"])
        except (OSError, ValueError):  # pruned: its files are gone
            continue
        if meta.get("settings") and not architecture_change(settings, meta):
            return entry["version"], entry["status"], list(meta.get("data_partitions") or [])
    return None


def _incremental_done(settings: Settings, registry) -> tuple[str, str] | None:
    """The rejected or rolled-back version the incremental stage would reuse tonight, if any:
    running it would only judge that version again (and repeat its rejection notice)."""
    from aivj_assets.stages import NothingToTrain, incremental_inputs

    try:
        identity = incremental_inputs(settings, registry).identity
    except NothingToTrain:
        return None
    # Pruned versions count too: on low disk a rejected candidate is pruned at once, and
    # training the same recipe again would only be rejected again.
    tried = [e for e in registry.entries() if e.get("identity") == identity and e.get("stage") == "incremental"]
    status = tried[-1]["status"] if tried else None
    return (tried[-1]["version"], status) if status in ("rejected", "rolled_back") else None


_JOBS = {"full_training": full_training, "incremental_training": incremental_training}
nightly_training_job = dg.define_asset_job(
    "nightly_training_job",
    selection=full_training.selection | incremental_training.selection,
    tags=TRAINING_TAGS,
    description="What nightly_training launches: the assets of full_training or of incremental_training.",
)


def _training_in_progress(instance: dg.DagsterInstance) -> str | None:
    key, value = next(iter(TRAINING_TAGS.items()))
    runs = instance.get_runs(dg.RunsFilter(tags={key: value}, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]), limit=1)
    return runs[0].run_id if runs else None


def build_nightly_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The schedule for ``settings``' window and time zone (read when the code location loads)."""

    @dg.schedule(name="nightly_training", cron_schedule=cron_for_window_start(settings),
                 execution_timezone=settings.timezone, job=nightly_training_job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"At {settings.window} ({settings.timezone}): full, incremental or skip, with the reason.")
    def nightly_training(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        current = load_settings()  # paths and policies as they are tonight
        now = context.scheduled_execution_time
        window = open_window(current, now)
        if window is None:
            return dg.SkipReason(f"the training window {current.window} ({current.timezone}) is not open at {now}")
        running = _training_in_progress(context.instance)
        if running:
            return dg.SkipReason(f"a training run is already queued or running ({running})")
        plan = plan_nightly(read_facts(current), now, current.full_every_days, current.min_improvement)
        if plan.job is None:
            return dg.SkipReason(plan.reason)
        job = _JOBS[plan.job]
        keys = job.selection.resolve(context.repository_def.asset_graph)
        context.log.info(f"nightly training: {plan.job} ({plan.reason}), deadline {window.end.isoformat()}")
        return dg.RunRequest(
            run_key=f"nightly-{window.start.date().isoformat()}",
            asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
            tags={**TRAINING_TAGS, **job.tags, DEADLINE_TAG: window.end.isoformat(), PLAN_TAG: plan.job,
                  REASON_TAG: plan.reason[:200]},
        )

    return nightly_training


SCHEDULES: list = [build_nightly_schedule(load_settings())]
