"""The nightly decision: full training, incremental training or skip, and why (no Dagster).

``read_facts`` gathers what the decision looks at (store, registry; the caller says who paused);
``plan_nightly`` is a pure function of those facts and the clock, so every rule of the
owner's plan is tested on facts alone. The ``nightly_training`` schedule only asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aivj_assets.data.parts import training_row_count
from aivj_assets.data.store import Store
from aivj_assets.policy.recipes import NothingToTrain, incremental_inputs, new_partitions
from aivj_assets.registry import Registry
from aivj_assets.settings import Settings, architecture_change, describe_change


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


def plan_nightly(facts: TrainingFacts, now: datetime, full_every_days: int, min_improvement: float) -> Plan:
    """Full when there is no champion or the last full training is too old, incremental when
    partitions are new, otherwise skip when the last improvement was under ``min_improvement``.
    The rules are asked in that order; the first with an answer decides."""
    if facts.paused_by is not None:
        return Plan(None, f"training is paused (by {facts.paused_by}); /resume or `aivj resume` to go on")
    if not facts.stored:
        return Plan(None, "no data ingested yet")
    return (_full_due(facts, now, full_every_days) or _incremental(facts)
            or _nothing_new(facts, min_improvement))


def _full_due(facts: TrainingFacts, now: datetime, full_every_days: int) -> Plan | None:
    """A full training, or a wait for data, when the champion's lineage asks for one."""
    if facts.champion is None:
        return Plan("full_training", "no champion yet")
    changed = f"the model's architecture changed since champion {facts.champion} ({facts.architecture_change})"
    if facts.architecture_change:
        tried = facts.new_shape_full
        if tried and tried[1] != "candidate" and not new_partitions(facts.stored, tried[2]):
            return Plan(None, f"{changed}; {tried[0]} with the new shape was {tried[1]}: waiting for new data")
        return Plan("full_training", f"{changed}: a new lineage")
    if facts.last_full_at is None:
        return Plan("full_training", f"champion {facts.champion} has no full training behind it")
    age = now - facts.last_full_at
    if age >= timedelta(days=full_every_days):
        return Plan("full_training", f"last full training {age.days} days ago (every {full_every_days} days)")
    return None


def _incremental(facts: TrainingFacts) -> Plan | None:
    """An incremental training when partitions are new and would teach something not yet judged."""
    new = new_partitions(facts.stored, facts.champion_partitions)
    if not new:
        return None
    if facts.incremental_done:
        version, status = facts.incremental_done
        return Plan(None, f"{len(new)} new partition(s) since {facts.champion}, already trained as {version} "
                          f"({status}): waiting for more data; launch incremental_training to judge it again")
    if facts.new_training_rows == 0:
        return Plan(None, f"{len(new)} new partition(s) since {facts.champion} hold no training rows (their rows "
                          "are bad, selection, gate or elite judging rows): waiting for more data")
    shown = ", ".join(new[:3]) + (", ..." if len(new) > 3 else "")
    return Plan("incremental_training", f"{len(new)} new partitions since {facts.champion}: {shown}")


def _nothing_new(facts: TrainingFacts, min_improvement: float) -> Plan:
    """With nothing new: train again only while the last training still improved enough."""
    if facts.rolled_back:  # its gain is not a reason to train again: the owner turned it down
        return Plan(None, f"nothing new since {facts.champion}; the last training, {facts.rolled_back}, was rolled "
                          "back: waiting for new data")
    if facts.last_improvement is not None and facts.last_improvement < min_improvement:
        return Plan(None, f"nothing new since {facts.champion} and the last improvement was "
                          f"{facts.last_improvement:+.2%} (< {min_improvement:.1%})")
    gain = "unknown" if facts.last_improvement is None else f"{facts.last_improvement:+.2%}"
    return Plan("full_training", f"no new data, but the last training improved by {gain}: train again")


def _score(entry: dict) -> float | None:
    """A version's accuracy as judged (elite, else gate rows); None when it was never judged."""
    measured = entry.get("measured") or {}
    value = measured.get("elite_accuracy", measured.get("val_accuracy"))
    return float(value) if isinstance(value, (int, float)) else None


def _gain(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else (new - old) / old


def _paired_gain(entry: dict) -> float | None:
    """A judged version's gain over the champion it was judged against, relative to the champion's
    accuracy, from the same gate rows measured at the same time (None when it was never judged so)."""
    pair = entry.get("paired") or {}
    champion = (entry.get("champion_measured") or {}).get("val_accuracy")
    return pair["gain"] / champion if "gain" in pair and champion else None


def read_facts(settings: Settings, paused_by: str | None = None) -> TrainingFacts:
    """The decision's inputs from the store and the registry; ``paused_by``: who paused training, if paused."""
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
    training_rows = training_row_count(settings, fresh) if fresh and not done else None
    return TrainingFacts(
        paused_by=paused_by, stored=stored, champion=champion,
        champion_partitions=champion_partitions, last_full_at=last_full_at, last_improvement=improvement,
        incremental_done=done, rolled_back=rolled_back, architecture_change=change, new_shape_full=shaped,
        new_training_rows=training_rows,
    )


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
    try:
        identity = incremental_inputs(settings, registry).identity
    except NothingToTrain:
        return None
    # Pruned versions count too: on low disk a rejected candidate is pruned at once, and
    # training the same recipe again would only be rejected again.
    tried = [e for e in registry.entries() if e.get("identity") == identity and e.get("stage") == "incremental"]
    status = tried[-1]["status"] if tried else None
    return (tried[-1]["version"], status) if status in ("rejected", "rolled_back") else None
